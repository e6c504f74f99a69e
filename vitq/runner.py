"""Run one build stage in a process of its own: ``python -m vitq.runner STAGE RECIPE_FILE ARTIFACTS_ROOT``.

Why a process per stage: saved TorchScript depends on PYTHONHASHSEED, which must be fixed before the
interpreter starts; the doit process stays free of torch; each stage's time and peak memory are its own.
Exit codes: 0 done, 2 user error (one line on stderr), anything else is a vitq bug (traceback).
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import sys
import time
from pathlib import Path

from vitq.errors import USER_ERROR, run_command
from vitq.layout import ArtifactPaths
from vitq.pipeline import stage_named
from vitq.recipe import Recipe, load_recipe
from vitq.torch_setup import configure_torch

HASH_SEED = "0"


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if os.environ.get("PYTHONHASHSEED") != HASH_SEED:
        env = {**os.environ, "PYTHONHASHSEED": HASH_SEED}
        os.execve(sys.executable, [sys.executable, "-m", "vitq.runner", *args], env)
    if len(args) != 3:
        print("usage: python -m vitq.runner STAGE RECIPE_FILE ARTIFACTS_ROOT", file=sys.stderr)
        return USER_ERROR
    stage_name, recipe_file, root = args
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
    return run_command(lambda: _run(stage_name, recipe_file, Path(root)))


def _run(stage_name: str, recipe_file: str, root: Path) -> int:
    recipe = load_recipe(recipe_file)
    summary, seconds, peak_mb = run_stage(stage_name, recipe, ArtifactPaths.for_recipe(root, recipe.name))
    print(f"  {recipe.name}:{stage_name:<10} {summary}  [{seconds:.1f}s, peak {peak_mb:.0f} MB]", flush=True)
    return 0


def run_stage(stage_name: str, recipe: Recipe, paths: ArtifactPaths) -> tuple[str, float, float]:
    """Run a stage in this process with the inputs and outputs the pipeline gives doit; log its cost beside the
    artifacts (not in the manifest)."""
    stage = stage_named(stage_name)
    configure_torch(recipe)
    module = importlib.import_module(stage.module)
    started = time.perf_counter()
    summary = module.run(recipe, stage.inputs(recipe, paths), stage.outputs(recipe, paths))
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    _log(paths, {"recipe": recipe.name, "stage": stage_name, "seconds": round(seconds, 3),
                 "peak_rss_mb": round(peak_mb, 1), "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    return summary, seconds, peak_mb


def _log(paths: ArtifactPaths, record: dict) -> None:
    paths.root.mkdir(parents=True, exist_ok=True)
    with open(paths.build_log, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, sort_keys=True) + "\n")


if __name__ == "__main__":
    sys.exit(main())
