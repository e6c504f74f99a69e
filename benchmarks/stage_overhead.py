"""Benchmark (prints figures, asserts nothing): a cold vitq build vs the same chain as one plain script, offline.

What a process per stage costs: both sides build the recipe of --model with random weights (no network).

    .venv/bin/python benchmarks/stage_overhead.py [--model deit_base_patch16_224] [--no-pte] [--digits] [--keep DIR]

vitq: `doit build:<recipe>` in a fresh output root (VITQ_ARTIFACTS), for a recipe in a temporary VITQ_RECIPES folder
that extends the shipped recipe of --model (recipes/deit.yaml for deit_base) with `weights: {random: {seed: 0}}`.
Each stage logs its work seconds (the time inside its run(), torch and stage imports excluded) in build-log.jsonl,
so (build wall - sum of work) / stage processes is the start-up and orchestration cost per stage.

Plain: one child process (this file with --plain-chain, PYTHONHASHSEED=0, the recipe's threads) that does the same
work with vitq's own torch-side functions (vitq.model.networks, vitq.model.convert, vitq.check.evaluate, vitq.check.manifest) and the same
checks (lite and .pte run on a sample image, onnx.checker, onnxruntime smoke run, the gates and the build-path
search), but hands models over in memory instead of reloading them from files, and has no doit. Its time is the
child's wall clock, interpreter start and imports included. Neither side uses VITQ_CACHE.

Prints both times, their ratio (goal: at most 1.5x), the sum of stage work seconds, the overhead per stage process,
and each stage's work seconds beside the plain script's for the same step. --digits also times `make build`'s
`doit build:digits` in a fresh output root (goal: at most 70 s on 2 cores). deit_base takes minutes: run it on an
otherwise idle machine, since concurrent builds oversubscribe the cores and distort every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = "deit_base_patch16_224"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help="a timm model; the shipped recipe that builds it is extended (default: deit_base, "
                             "recipes/deit.yaml); any other model extends recipes/deit.yaml with that name")
    parser.add_argument("--no-pte", action="store_true", help="executorch: {enabled: false} on both sides")
    parser.add_argument("--digits", action="store_true", help="also time doit build:digits in a fresh output root")
    parser.add_argument("--keep", type=Path, help="build here and keep it (default: a temporary folder)")
    parser.add_argument("--plain-chain", nargs=2, metavar=("RECIPE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_chain:
        plain_chain(args.plain_chain[0], Path(args.plain_chain[1]))
        return
    with tempfile.TemporaryDirectory(prefix="vitq-stage-overhead-") as tmp:
        folder = (args.keep or Path(tmp)).absolute()
        folder.mkdir(parents=True, exist_ok=True)
        compare(args, folder)


def compare(args: argparse.Namespace, folder: Path) -> None:
    from vitq.recipe import load_recipe

    recipe_file = write_recipe(folder / "recipes", args.model, args.no_pte)
    recipe = load_recipe(recipe_file)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHASHSEED", "VITQ_CACHE", "VITQ_CACHE_MODE")}
    env["HF_HUB_OFFLINE"] = "1"  # random weights: nothing to download, and nothing may try
    print(f"recipe {recipe.name} ({recipe.model.name}, random weights, .pte {'on' if recipe.executorch.enabled else 'off'}, "
          f"{recipe.threads} torch threads); {os.cpu_count()} CPUs; in {folder}", flush=True)

    # Both sides then find torch's libraries in the page cache: neither pays the first read from disk.
    libraries = "torch, timm, torchvision, onnx, onnxruntime" + (", executorch" if recipe.executorch.enabled else "")
    warm = run_timed([sys.executable, "-c", f"import {libraries}"], env)
    print(f"warm-up import of {libraries}: {warm:.1f} s (not counted)", flush=True)

    build_env = {**env, "VITQ_RECIPES": str(recipe_file.parent)}
    vitq_seconds = doit_build(recipe.name, folder / "vitq", build_env)
    work = stage_work(folder / "vitq" / recipe.name / "build-log.jsonl", recipe.name)
    print(f"vitq build done: {vitq_seconds:.1f} s", flush=True)

    plain_out = folder / "plain" / recipe.name
    plain_out.mkdir(parents=True, exist_ok=True)
    plain_seconds = run_timed([sys.executable, str(Path(__file__).resolve()), "--plain-chain", str(recipe_file),
                               str(plain_out)], {**env, "PYTHONHASHSEED": "0"})
    record = json.loads((plain_out / "steps.json").read_text())
    steps = record["seconds"]
    print(f"plain script done: {plain_seconds:.1f} s", flush=True)

    print()
    print(f"{'stage':<12} {'vitq work s':>12} {'peak MB':>9} {'plain step s':>13}")
    for name, seconds in steps.items():
        if name not in work:
            print(f"{name:<12} {'':>12} {'':>9} {seconds:13.1f}")
    for name, (seconds, peak) in work.items():
        print(f"{name:<12} {seconds:12.1f} {peak:9.0f} {steps.get(name, float('nan')):13.1f}")
    print()
    figure(f"vitq cold build (doit build:{recipe.name})", f"{vitq_seconds:7.1f} s")
    figure("plain script (one process, imports included)", f"{plain_seconds:7.1f} s")
    figure("ratio vitq / plain", f"{vitq_seconds / plain_seconds:7.2f}x  (goal <= 1.5x)")
    print_overhead(vitq_seconds, work)
    figure("plain steps (in-process, sum)", f"{sum(steps.values()):7.1f} s; one-image checks max |dlogit|: "
           + ", ".join(f"{k} {v:.1e}" for k, v in record["max_abs_diff"].items()))

    if args.digits:
        print(flush=True)
        digits_env = {k: v for k, v in env.items() if k not in ("HF_HUB_OFFLINE", "VITQ_RECIPES")}
        seconds = doit_build("digits", folder / "digits", digits_env)
        figure("digits build (make build: doit build:digits)", f"{seconds:7.1f} s  (goal <= 70 s on 2 cores)")
        print_overhead(seconds, stage_work(folder / "digits" / "digits" / "build-log.jsonl", "digits"))


def write_recipe(folder: Path, model: str, no_pte: bool) -> Path:
    """A recipe extending the shipped one that builds ``model``, with random weights (offline)."""
    from vitq.orchestration.discovery import PROJECT_ROOT
    from vitq.recipe import load_recipe

    shipped = sorted(p for p in (PROJECT_ROOT / "recipes").glob("*.yaml") if not p.name.startswith("_"))
    base = next((p for p in shipped if load_recipe(p).model.name == model), PROJECT_ROOT / "recipes" / "deit.yaml")
    text = f"extends: {base}\nweights: {{random: {{seed: 0}}}}\n"
    if load_recipe(base).model.name != model:
        text += f"model: {{name: {model}}}\n"
    if no_pte:
        text += "executorch: {enabled: false}\n"
    folder.mkdir(parents=True, exist_ok=True)
    recipe_file = folder / f"{model.replace('_patch16_224', '')}_overhead.yaml"
    recipe_file.write_text(text)
    return recipe_file


def run_timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"{' '.join(command[:4])} ... failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return seconds


def doit_build(recipe: str, artifacts: Path, env: dict[str, str]) -> float:
    """Wall clock of a cold `doit build:<recipe>` (a fresh output root, so a fresh doit state). A failed gate
    still ran every stage: that is reported, and the time counts."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "doit", "-f", str(REPO / "dodo.py"), f"build:{recipe}"], cwd=REPO,
                          env={**env, "VITQ_ARTIFACTS": str(artifacts)}, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        if not (artifacts / recipe / "manifest.json").is_file():
            sys.exit(f"doit build:{recipe} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        print(f"doit build:{recipe} exited {proc.returncode} after writing its manifest (a failed gate): "
              f"{proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ''}")
    return seconds


def stage_work(build_log: Path, recipe: str) -> dict[str, tuple[float, float]]:
    """Each stage's work seconds and peak RSS (MB), as its process logged them, in build order."""
    records = [json.loads(line) for line in build_log.read_text().splitlines() if line.strip()]
    return {r["stage"]: (r["seconds"], r["peak_rss_mb"]) for r in records if r["recipe"] == recipe and "seconds" in r}


def print_overhead(wall: float, work: dict[str, tuple[float, float]]) -> None:
    work_sum = sum(seconds for seconds, _ in work.values())
    figure(f"sum of stage work seconds ({len(work)} stage processes)", f"{work_sum:7.1f} s")
    figure("overhead (wall - work)", f"{wall - work_sum:7.1f} s = "
           f"{(wall - work_sum) / max(1, len(work)):.2f} s per stage process")


def figure(label: str, value: str) -> None:
    print(f"{label + ':':<52}{value}")


# ---------------------------------------------------------------- the plain script (in the child process)

STEPS: dict[str, float] = {}
DIFFS: dict[str, float] = {}  # the one-image checks the stages make, as max |dlogit|


@contextlib.contextmanager
def step(name: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    STEPS[name] = round(time.perf_counter() - started, 3)


def plain_chain(recipe_file: str, out: Path) -> None:
    """Every stage's work in order, in this one process, models handed over in memory. Writes the files a build
    writes into ``out``, plus steps.json (seconds per step)."""
    with step("imports"):  # what each stage process also pays (before its work is timed)
        import io
        import logging
        import shutil

        import numpy as np
        import onnx
        import torch
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from safetensors.torch import save_file
        from torch.utils.mobile_optimizer import MobileOptimizerType, optimize_for_mobile

        from vitq.check import gates
        from vitq.check import manifest as mf
        from vitq.check.build_paths import build_paths_in, machine_paths
        from vitq.check.evaluate import evaluate
        from vitq.check.report import markdown
        from vitq.model import convert, executorch_export, networks
        from vitq.model.datasets.photos import photo_files
        from vitq.model.preprocess import load_batch
        from vitq.model.relative_paths import strip_onnx_build_paths
        from vitq.model.runtimes import load_lite, load_pte, onnx_session
        from vitq.model.samples import write_labels_csv
        from vitq.model.torch_setup import configure_torch
        from vitq.recipe import load_recipe
        from vitq.variants import shipped, variants_for

        recipe = load_recipe(recipe_file)
        configure_torch(recipe)
    if recipe.weights.kind != "random" or recipe.samples.builtin != "photos":
        sys.exit("the plain chain builds recipes with random weights and samples: photos only")

    with step("fp32"):
        torch.manual_seed(recipe.weights.random.seed)
        model = networks.create_model(recipe)
        files = {v.id: out / v.file for v in variants_for(recipe) if v.file}
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(files["fp32"]),
                  metadata={"model": recipe.model.name})

    with step("samples"):
        (out / "samples").mkdir(exist_ok=True)
        photos = photo_files()
        for path, _ in photos:
            shutil.copyfile(path, out / "samples" / path.name)
        labels = out / "samples" / "labels.csv"
        write_labels_csv(labels, [(path.name, classes) for path, classes in photos])
        one_image = load_batch(recipe.preprocess, [out / "samples" / photos[0][0].name])  # the stages' check image

    with step("int8"):
        scripted = convert.export_torchscript(recipe, convert.quantize_dynamic_int8(recipe, model))
        convert.save_torchscript(scripted, files["int8"])

    mobile = scripted
    if recipe.mobile.optimize:
        with step("optimized"):
            blocklist = {getattr(MobileOptimizerType, name) for name in recipe.mobile.blocklist}
            mobile = optimize_for_mobile(scripted, optimization_blocklist=blocklist)
            convert.save_torchscript(mobile, files["optimized"])

    with step("lite"):
        mobile._save_for_lite_interpreter(str(files["lite"]))
        with torch.no_grad():
            DIFFS["lite"] = (mobile(one_image) - load_lite(files["lite"])(one_image)).abs().max().item()

    with step("onnx_fp32"):
        example = networks.example_input(recipe).repeat(2, 1, 1, 1)
        with contextlib.redirect_stdout(io.StringIO()):
            program = torch.onnx.export(
                model, (example,), dynamo=True, opset_version=recipe.export.opset, external_data=False,
                input_names=["pixel_values"], output_names=["logits"],
                dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},),
            )
            program.save(str(files["onnx_fp32"]), external_data=False)
        proto = onnx.load(str(files["onnx_fp32"]))
        strip_onnx_build_paths(proto)
        onnx.save(proto, str(files["onnx_fp32"]))
        onnx.checker.check_model(str(files["onnx_fp32"]), full_check=True)
        inputs = torch.randn(2, 3, recipe.preprocess.crop, recipe.preprocess.crop,
                             generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            expected = model(inputs).numpy()
        got = onnx_session(files["onnx_fp32"], 1).run(None, {"pixel_values": inputs.numpy()})[0]
        DIFFS["onnx_fp32"] = float(np.abs(got - expected).max())

    with step("onnx_int8"):
        logging.getLogger().setLevel(logging.ERROR)
        quantize_dynamic(str(files["onnx_fp32"]), str(files["onnx_int8"]), weight_type=QuantType.QInt8)
        onnx_session(files["onnx_int8"], 1)

    written = {v.id: files[v.id] for v in shipped(recipe)}
    if recipe.executorch.enabled:
        with step("pte"):
            pte_program, delegation = executorch_export.export_executorch(recipe, model, recipe.pte_candidates[0])
            files["pte"].write_bytes(pte_program)
            written["delegation"] = out / "pte-delegation.json"
            written["delegation"].write_text(json.dumps(delegation, indent=2, sort_keys=True) + "\n")
            got = load_pte(files["pte"])(one_image)
            with torch.no_grad():
                expected = model(one_image).numpy()
            DIFFS["pte"] = float(np.abs(got - expected).max())

    with step("eval"):
        evaluation = evaluate(recipe, files, labels)
        eval_file = out / "eval.json"
        eval_file.write_text(json.dumps({"schema": "vitq.eval/1", **evaluation}, indent=2, sort_keys=True) + "\n")

    with step("manifest"):
        checks = gates.run_checks(recipe, evaluation["metrics"])
        forbidden = machine_paths(out.parent)
        searched = [*(files[v.id] for v in shipped(recipe)), eval_file, *sorted((out / "samples").iterdir())]
        found = {f.relative_to(out).as_posix(): hits for f in searched if (hits := build_paths_in(f, forbidden))}
        checks.append(gates.build_path_check(found, forbidden))
        manifest = mf.build_manifest(recipe, {**written, "samples": labels, "eval": eval_file}, out, evaluation,
                                     checks, networks.weights_uri(recipe))
        (out / "manifest.json").write_text(mf.dumps(manifest))
        (out / "report.md").write_text(markdown(manifest))

    (out / "steps.json").write_text(json.dumps({"seconds": STEPS, "max_abs_diff": DIFFS}, indent=2) + "\n")


if __name__ == "__main__":
    main()
