"""Benchmark (prints figures, asserts nothing): the mobile vision-transformer families (issue 21), each built with
random weights through doit, offline, then timed by vitq's bench; one markdown table.

    .venv/bin/python benchmarks/families.py [--full-size] [--only fastvit,swin] [--repeats 20] [--keep DIR]

One member per family. By default a small one (64-pixel inputs where the architecture allows it, fewer blocks,
through ``model.kwargs``; EfficientFormer's attention biases are fixed at 224 pixels, so it keeps the size and gets
narrow stages instead): the same configurations tests/test_families.py builds, here with ImageNet's 1000 classes
and the sample photos. ``--full-size``: the timm model as registered, with its pretrained config's preprocessing
(what ``vitq new`` writes), minutes per family on 2 cores.

Each family is one ``doit build:<recipe>`` (its wall clock is the build time, doit's and the stage processes'
start-up included; VITQ_ARTIFACTS and VITQ_RECIPES point at a temporary folder, no shared cache), then
the .pte and onnxruntime's dynamic int8 timed at batch 1 with vitq's bench code (``vitq.bench.measure``: p50 of
``--repeats`` timed runs on the build's sample images, the recipe's threads; ``doit bench:<recipe>`` would time
every variant, the slow TorchScript int8 ones included). Columns:
formats built (the .ptl chain, fp32 + int8 ONNX, the .pte and how it is quantized), each shipped file's size over
fp32.safetensors, the .pte's graph nodes left on portable kernels over all its nodes, b1 p50 latency of the .pte
and of onnxruntime's dynamic int8, and the build time. A family whose build fails gets its one-line error below
the table. Run it on an otherwise idle machine: concurrent work distorts every figure.

Per-family settings are what the family needs in ExecuTorch 1.3.1 (``export: {method: trace}`` where TorchScript
cannot save the scripted model; ``executorch: {quantize: none}`` for MobileViT v2, whose dynamic-int8 program is off
with random weights: the .pte stage would refuse it); each is printed with the table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WARMUP = 2  # untimed runs before the timed ones, as python -m vitq.bench's default

# key -> (family, timm model, small kwargs, small input pixels, settings the family needs)
FAMILIES: dict[str, tuple[str, str, str, int, str]] = {
    "mobilevit_v1": ("MobileViT v1", "mobilevit_xxs", "{}", 64, ""),
    "mobilevit_v2": ("MobileViT v2", "mobilevitv2_050", "{}", 64,
                     "export: {method: trace}\nexecutorch: {quantize: none}"),
    "fastvit": ("FastViT", "fastvit_t8", "{layers: [1, 1, 1, 1]}", 64, ""),
    "efficientformer": ("EfficientFormer", "efficientformer_l1",
                        "{depths: [1, 1, 1, 2], embed_dims: [16, 32, 48, 64], num_vit: 1}", 224, ""),
    "efficientvit": ("EfficientViT (MIT)", "efficientvit_b0", "{depths: [1, 1, 1, 1, 1]}", 64, ""),
    "levit": ("LeViT", "levit_128s", "{img_size: 64, depth: [1, 1, 1]}", 64, ""),
    "swin": ("Swin", "swin_tiny_patch4_window7_224",
             "{img_size: 64, window_size: 4, embed_dim: 24, depths: [2, 1], num_heads: [1, 2]}", 64, ""),
    "tinyvit": ("TinyViT", "tiny_vit_5m_224", "{depths: [1, 1, 1, 1]}", 64, ""),
}


def recipe_text(key: str, full_size: bool) -> str:
    _, model, kwargs, pixels, needs = FAMILIES[key]
    if full_size:
        from vitq.model.model_recipe import model_section, preprocess_section

        preprocess = json.dumps(preprocess_section(model_section(model)))
        head = f"model: {{source: timm, name: {model}}}\npreprocess: {preprocess}\n"
    else:
        head = (f"model: {{source: timm, name: {model}, kwargs: {kwargs}}}\n"
                f"preprocess: {{resize: {pixels * 8 // 7}, crop: {pixels}, "
                "mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}\n")
    # no portable-node gate: the table reports the count (the default gate allows 5)
    return (head + "weights: {random: {seed: 0}}\nsamples: photos\nchecks: {max_portable_nodes: 100000}\n"
            + (needs + "\n" if needs else ""))


def run(command: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    return proc, time.perf_counter() - started


def failure_line(output: str) -> str:
    """The build's one-line error (what doit printed after TaskFailed), or its last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if line.startswith("TaskFailed") and i + 1 < len(lines):
            return f"{line.split('taskid:')[-1]}: {lines[i + 1]}"
    return lines[-1] if lines else "no output"


def latencies(recipe_file: Path, root: Path, repeats: int) -> dict[str, dict]:
    """Batch-1 timings of the .pte and onnxruntime's int8 only, with vitq's bench code (``vitq.bench.measure``:
    each loaded fresh, warmed up, ``repeats`` timed runs on the build's sample images, the recipe's threads).
    ``doit bench:<recipe>`` times every variant, the TorchScript ones included: minutes per family."""
    import torch

    from vitq.bench.measure import load_inputs, measure, measurements
    from vitq.layout import ArtifactPaths
    from vitq.model.torch_setup import configure_torch
    from vitq.orchestration.pipeline import model_files
    from vitq.progress import Progress
    from vitq.recipe import load_recipe

    recipe = load_recipe(recipe_file)
    paths = ArtifactPaths.for_recipe(root, recipe.name)
    configure_torch(recipe)
    inputs, files = load_inputs(recipe, paths, (1,)), model_files(recipe, paths)
    todo = [m for m in measurements(recipe, list(torch.backends.quantized.supported_engines))
            if m.variant.format == "executorch" or m.id == "onnx_int8"]
    with Progress(len(todo) * (WARMUP + repeats), "b1", "runs", mode="off") as bar:
        return {m.id: measure(m, recipe, files, recipe.threads, inputs, WARMUP, repeats, bar)[0] for m in todo}


def timed_threads(recipe_file: Path) -> int:
    from vitq.recipe import load_recipe

    return load_recipe(recipe_file).threads


def row(key: str, root: Path, seconds: float, timed: dict[str, dict]) -> list[str]:
    family, model = FAMILIES[key][:2]
    manifest = json.loads((root / key / "manifest.json").read_text())
    by_format = {}
    for a in manifest["artifacts"]:
        by_format.setdefault(a["format"], a)
    by_name = {a["name"]: a for a in manifest["artifacts"]}
    pte = by_format.get("executorch")
    quantized = (pte or {}).get("delegation", {}).get("quantization", {}).get("strategy")
    formats = ", ".join(f for f, ok in [(".ptl", "lite" in by_name), ("onnx", "onnx_int8" in by_name),
                                        (f".pte ({ {'dynamic_int8': 'int8', 'none': 'fp32'}.get(quantized, quantized)})", pte)] if ok)

    def ratio(artifact: dict | None) -> str:
        return f"{artifact['size_ratio_vs_fp32']:.2f}x" if artifact else "-"

    def p50(variant: str | None) -> str:
        batch = timed.get(variant or "", {}).get("batches", {}).get("1")
        return f"{batch['p50_ms']:.1f}" if batch else "-"

    nodes = "-"
    if pte:
        d = pte["delegation"]
        nodes = f"{d['portable_nodes']} / {d['portable_nodes'] + d['delegated_nodes']}"
    return [family, f"`{model}`", formats, ratio(by_name.get("lite")), ratio(by_name.get("onnx_int8")), ratio(pte),
            nodes, p50(pte and pte["name"]), p50("onnx_int8"), f"{seconds:.0f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full-size", action="store_true",
                        help="the timm models as registered (default: small members)")
    parser.add_argument("--only", default=",".join(FAMILIES), help=f"comma-separated subset of {', '.join(FAMILIES)}")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs at batch 1 per variant (default 20)")
    parser.add_argument("--keep", type=Path, help="build here and keep it (default: a temporary folder)")
    args = parser.parse_args()
    keys = [k.strip() for k in args.only.split(",") if k.strip()]
    unknown = sorted(set(keys) - set(FAMILIES))
    if unknown:
        parser.error(f"--only: unknown {', '.join(unknown)}; choose from {', '.join(FAMILIES)}")
    with tempfile.TemporaryDirectory(prefix="vitq-families-") as tmp:
        folder = args.keep or Path(tmp)
        recipes, root = folder / "recipes", folder / "artifacts"
        recipes.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "VITQ_RECIPES": str(recipes), "VITQ_ARTIFACTS": str(root), "VITQ_PROGRESS": "off"}
        env.pop("VITQ_CACHE", None)
        rows, failures, threads = [], [], set()
        for key in keys:
            (recipes / f"{key}.yaml").write_text(recipe_text(key, args.full_size))
            proc, seconds = run([sys.executable, "-m", "doit", "-f", str(REPO / "dodo.py"), f"build:{key}"], env)
            output = proc.stdout + proc.stderr
            print(f"{key}: build {'ok' if proc.returncode == 0 else 'FAILED'} in {seconds:.0f} s"
                  + ("; a traceback in the output" if "Traceback" in output else ""), flush=True)
            if proc.returncode != 0 or not (root / key / "manifest.json").is_file():
                failures.append(f"{key}: {failure_line(output)}")
                continue
            timed = latencies(recipes / f"{key}.yaml", root, args.repeats)
            failures += [f"{key}: {r['id']}: {r['error']}" for r in timed.values() if r["error"]]
            rows.append(row(key, root, seconds, timed))
            threads.add(timed_threads(recipes / f"{key}.yaml"))
    print()
    print(f"{'Full-size' if args.full_size else 'Small'} members, random weights, "
          f"{', '.join(str(t) for t in sorted(threads - {None})) or '?'} thread(s), b1 p50 of "
          f"{args.repeats} runs (ms):")
    print()
    header = ["family", "timm model", "formats built", ".ptl / fp32", "int8 onnx / fp32", ".pte / fp32",
              ".pte portable / total nodes", ".pte b1 ms", "ORT int8 b1 ms", "build s"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for cells in rows:
        print("| " + " | ".join(cells) + " |")
    settings = [f"{FAMILIES[k][0]}: " + FAMILIES[k][4].replace("\n", "; ") for k in keys if FAMILIES[k][4]]
    if settings:
        print("\nSettings per family: " + "; ".join(settings))
    for line in failures:
        print(f"FAILED {line}")


if __name__ == "__main__":
    main()
