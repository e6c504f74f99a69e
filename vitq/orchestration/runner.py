"""Run one build stage in this process: forked from the stage server (vitq.orchestration.stage_process), or in a fresh
interpreter, ``python -m vitq.orchestration.runner STAGE RECIPE_FILE ARTIFACTS_ROOT`` (``VITQ_STAGE_PROCESS=fresh``).

Saved TorchScript depends on PYTHONHASHSEED, and a pinned stage's numbers on settings torch reads when it loads
(``vitq.numerics``): both must be in place before the interpreter starts (the fresh interpreter re-executes
itself with them). Exit codes: 0 done, 2 user error (one line on stderr), anything else
is a vitq bug (traceback).
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from vitq import progress
from vitq.errors import USER_ERROR, exit_code, run_command
from vitq.layout import ArtifactPaths
from vitq.model.torch_setup import configure_torch
from vitq.numerics import enter_pinned_stage, pinned_environ
from vitq.orchestration.pipeline import stage_named
from vitq.recipe import Recipe, load_recipe

RESULT_FD_VAR = "VITQ_RESULT_FD"  # set by vitq.orchestration.stage_process for a fresh interpreter: where its result goes
HASH_SEED = "0"  # saved TorchScript depends on PYTHONHASHSEED: every stage process starts with this one


def stage_environ(stage: str, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment a fresh interpreter for ``stage`` starts with: fixed hash seed; pins if it is pinned.
    Here, not in vitq.orchestration.stage_process, which starts stages through this module (imports point one way)."""
    env = {**environ, "PYTHONHASHSEED": HASH_SEED}
    return pinned_environ(env) if stage_named(stage).pinned else env


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 3:
        print("usage: python -m vitq.orchestration.runner STAGE RECIPE_FILE ARTIFACTS_ROOT", file=sys.stderr)
        return USER_ERROR
    stage_name, recipe_file, root = args
    try:
        env = stage_environ(stage_name, os.environ)
    except KeyError:
        print(f"vitq.orchestration.runner: unknown stage {stage_name!r}", file=sys.stderr)
        return USER_ERROR
    if env != dict(os.environ):  # hash seed or numerics not yet in place: torch must load with them
        os.execve(sys.executable, [sys.executable, "-m", "vitq.orchestration.runner", *args], env)
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
    import psutil

    started = psutil.Process().create_time()  # start-up: this interpreter, from its start
    return run_command(lambda: run_and_report(stage_name, recipe_file, root, requested=started))


def run_and_report(stage_name: str, recipe_file: str, root: str, requested: float | None = None) -> int:
    """``python -m vitq.orchestration.runner``: the recipe parsed once, the stage run, its result handed back: as JSON on the
    descriptor in ``VITQ_RESULT_FD`` (vitq.orchestration.stage_process reads it), or as its line when run by hand."""
    recipe = load_recipe(recipe_file)
    run = run_stage(stage_name, recipe, ArtifactPaths.for_recipe(Path(root), recipe.name), requested)
    fd = os.environ.get(RESULT_FD_VAR)
    if fd is None:
        print(run.line(recipe.name, stage_name), flush=True)
        return 0
    with open(int(fd), "w", encoding="utf-8") as out:
        json.dump(run._asdict(), out)
    return 0


class StageRun(NamedTuple):
    """What a stage run gives back: its summary and costs, passed to doit as a value (never parsed from text)."""

    summary: str
    seconds: float
    peak_mb: float

    def line(self, recipe_name: str, stage_name: str) -> str:
        return stage_line(recipe_name, stage_name, self.summary, f"{self.seconds:.1f}s, peak {self.peak_mb:.0f} MB")


def stage_line(recipe_name: str, stage_name: str, summary: str, cost: str) -> str:
    """How doit shows a finished stage: ``  <recipe>:<stage> <summary>  [<cost>]`` (ran, or a cache hit)."""
    return f"  {recipe_name}:{stage_name:<10} {summary}  [{cost}]"


def run_stage(stage_name: str, recipe: Recipe, paths: ArtifactPaths, requested: float | None = None) -> StageRun:
    """Run a stage in this process with the inputs and outputs the pipeline gives doit; log its cost beside the
    artifacts (not in the manifest). ``requested``: when the stage was asked for (time.time()), so the log says
    what starting its process cost."""
    stage = stage_named(stage_name)
    if stage.pinned:
        enter_pinned_stage()
    configure_torch(recipe)
    module = importlib.import_module(stage.module)
    startup = None if requested is None else max(0.0, time.time() - requested)
    started = time.perf_counter()
    with progress.stage(f"{recipe.name}:{stage_name}"):  # the prefix of this stage's progress lines
        summary = module.run(recipe, stage.inputs(recipe, paths), stage.outputs(recipe, paths))
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    log_stage_run(paths, recipe.name, stage_name, seconds, **({"startup_seconds": round(startup, 3)}
                  if startup is not None else {}), peak_rss_mb=round(peak_mb, 1))
    return StageRun(summary, seconds, peak_mb)


def log_stage_run(paths: ArtifactPaths, recipe_name: str, stage_name: str, seconds: float, **details: Any) -> None:
    """One record in build-log.jsonl beside the artifacts (not in the manifest): the one writer of that log, for
    stages that ran and for cache hits (``cache="hit"``)."""
    record = {"recipe": recipe_name, "stage": stage_name, "seconds": round(seconds, 3), **details,
              "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    paths.root.mkdir(parents=True, exist_ok=True)
    with open(paths.build_log, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, sort_keys=True) + "\n")


if __name__ == "__main__":
    sys.exit(exit_code(main()))
