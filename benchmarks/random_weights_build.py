"""Benchmark (prints figures, asserts nothing): a shipped hub recipe's whole chain with random weights instead
of the hub's, in this process, so it runs offline.

    PYTHONHASHSEED=0 .venv/bin/python benchmarks/random_weights_build.py [--recipe deit] [--keep DIR]

Prints every stage's seconds, each shipped file's size and its ratio to fp32 (deit_base: the tutorial has
346 MB -> 89 MB, 0.257x), what XNNPACK took of the .pte, and the numerical gates. deit (deit_base): about
1.5 minutes and 2.5 GB of memory on 2 cores. Peak RSS is this process's, so it only grows stage to stage.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from vitq.check.report import human_size
from vitq.layout import ArtifactPaths
from vitq.orchestration.discovery import PROJECT_ROOT
from vitq.orchestration.pipeline import stages_for
from vitq.orchestration.runner import run_stage
from vitq.recipe import load_recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="deit", help="a recipe under recipes/ (default: deit, i.e. deit_base)")
    parser.add_argument("--keep", type=Path, help="build here and keep it (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vitq-deit-base-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        recipe_file = folder / f"{args.recipe}_random.yaml"
        recipe_file.write_text(f"extends: {PROJECT_ROOT / 'recipes' / args.recipe}.yaml\nweights: {{random: {{seed: 0}}}}\n")
        if load_recipe(recipe_file).model.source == "transformers":  # the hub config is not here offline:
            # ViTConfig's defaults are google/vit-base-patch16-224's architecture; ImageNet's 1000 classes.
            recipe_file.write_text(recipe_file.read_text() + "model: {name: ViTForImageClassification, "
                                   "kwargs: {num_labels: 1000}}\n")
        recipe = load_recipe(recipe_file)
        paths = ArtifactPaths.for_recipe(folder / "artifacts", recipe.name)
        started = time.perf_counter()
        for stage in stages_for(recipe):
            try:
                _, seconds, peak = run_stage(stage.name, recipe, paths)
            except Exception as exc:  # a failed gate still wrote the manifest: report it
                print(f"{stage.name}: {exc}")
                continue
            print(f"stage {stage.name:<10} {seconds:6.1f} s  peak RSS {peak:6.0f} MB")
        manifest = json.loads(paths.manifest.read_text())
        print(f"total {time.perf_counter() - started:.1f} s")
        for a in manifest["artifacts"]:
            print(f"{a['path']:<20} {human_size(a['bytes']):>10}  {a['size_ratio_vs_fp32']:.3f}x fp32")
            if a.get("delegation"):
                d = a["delegation"]
                print(f"  XNNPACK took {d['delegated_nodes']} graph nodes, {d['portable_nodes']} on portable kernels: "
                      + ", ".join(f"{op} x{n}" for op, n in d["portable_operators"].items()))
        for c in manifest["checks"]:
            if c["passed"] is not None:
                print(f"check {c['name']}: {c['value']:.3g} ({'pass' if c['passed'] else 'FAIL'})")


if __name__ == "__main__":
    main()
