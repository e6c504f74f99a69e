"""Benchmark (prints figures, asserts nothing): every ExecuTorch quantization strategy of one recipe, side by side,
built in this process by the real stages: size and ratio to fp32, top-1 and agreement with fp32 on the recipe's
samples, b1 latency in ExecuTorch's runtime (p50 over --repeats), and each program's build seconds.

    PYTHONHASHSEED=0 .venv/bin/python benchmarks/strategies.py [--recipe digits] [--random] [--repeats 20]

``--random``: random weights instead of the recipe's (hub recipes offline; accuracy then means nothing). static_int8
is built only where the recipe declares calibration images; ``--random`` on a recipe without them calibrates on
16 noise images (they are not the samples). The TorchScript and ONNX chains are not built: only what the
.pte candidates need (fp32, samples, calibration).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from vitq.check.evaluate import evaluate
from vitq.check.report import human_size
from vitq.layout import ArtifactPaths, failed_candidates
from vitq.model.preprocess import load_batch
from vitq.model.runtimes import load_pte
from vitq.model.samples import read_samples
from vitq.orchestration.discovery import PROJECT_ROOT
from vitq.orchestration.runner import run_stage
from vitq.recipe import STRATEGIES, load_recipe
from vitq.variants import PTE_IDS

ORDER = ("8da4w", "dynamic_int8", "static_int8", "none")
assert set(ORDER) == set(STRATEGIES)


def recipe_file(folder: Path, name: str, random: bool) -> Path:
    """A recipe extending ``name`` that lists every strategy (and noise calibration images where it has none)."""
    base = load_recipe(PROJECT_ROOT / "recipes" / f"{name}.yaml")
    lines = [f"extends: {base.path}", f"executorch: {{quantize: [{', '.join(ORDER)}]}}"]
    if random:
        lines.append("weights: {random: {seed: 0}}")
    if base.calibration is None:
        from PIL import Image

        noise = folder / "calibration-noise"
        noise.mkdir(exist_ok=True)
        rng = np.random.default_rng(0)
        for i in range(16):
            Image.fromarray(rng.integers(0, 255, size=(256, 256, 3), dtype=np.uint8)).save(noise / f"noise{i:02d}.png")
        lines.append(f"calibration: {{dir: {noise}, count: 16}}")
    if random and base.model.source == "transformers":  # the hub config is not here offline
        lines.append("model: {name: ViTForImageClassification, kwargs: {num_labels: 1000}}")
    path = folder / f"{name}_strategies.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def b1_latency_ms(program: Path, image: np.ndarray, repeats: int) -> float:
    run = load_pte(program)
    run(image)  # warm-up (XNNPACK probes the CPU, packs weights)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(image)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="digits", help="a recipe under recipes/ (default: digits)")
    parser.add_argument("--random", action="store_true", help="random weights (hub recipes, offline)")
    parser.add_argument("--repeats", type=int, default=20, help="timed b1 runs per program (default 20)")
    parser.add_argument("--keep", type=Path, help="build here and keep it (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vitq-strategies-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        recipe = load_recipe(recipe_file(folder, args.recipe, args.random))
        paths = ArtifactPaths.for_recipe(folder / "artifacts", recipe.name)
        for stage in ("fp32", "samples", "calibration"):
            _, seconds, _ = run_stage(stage, recipe, paths)
            print(f"stage {stage:<12} {seconds:7.1f} s")
        built = {}
        for strategy in ORDER:
            variant = PTE_IDS[strategy]
            _, seconds, _ = run_stage(variant, recipe, paths)
            built[variant] = (strategy, seconds)
        files = {"fp32": paths.file("fp32"), **{v: paths.file(v) for v in built}}
        failed = failed_candidates(files)  # empty files: the stage recorded why
        metrics = evaluate(recipe, {k: f for k, f in files.items() if k not in failed}, paths.samples_labels)["metrics"]
        image = load_batch(recipe.preprocess, [read_samples(paths.samples_labels)[0].path])
        fp32_bytes = paths.file("fp32").stat().st_size
        print(f"\n{recipe.name} ({recipe.model.name}, weights {recipe.weights.kind}), "
              f"{metrics['fp32']['n']} samples, fp32 top-1 {metrics['fp32']['top1']:.1%}, fp32 {human_size(fp32_bytes)}\n")
        print("| strategy | file | size | vs fp32 | top-1 | agreement | b1 p50 ms | build s | kept in float |")
        print("|---|---|---|---|---|---|---|---|---|")
        for variant, (strategy, seconds) in built.items():
            file = paths.file(variant)
            if variant in failed:
                why = json.loads(paths.delegation_of(variant).read_text())["failed"]
                print(f"| {strategy} | {file.name} | failed: {why} | | | | | {seconds:.1f} | |")
                continue
            m = metrics[variant]
            kept = json.loads(paths.delegation_of(variant).read_text())["quantization"]["keep_float"]
            print(f"| {strategy} | {file.name} | {human_size(file.stat().st_size)} | "
                  f"{file.stat().st_size / fp32_bytes:.3f}x | {m['top1']:.1%} | {m['agreement']:.1%} | "
                  f"{b1_latency_ms(file, image, args.repeats):.2f} | {seconds:.1f} | {', '.join(kept) or 'none'} |")


if __name__ == "__main__":
    main()
