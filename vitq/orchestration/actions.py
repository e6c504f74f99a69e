"""The doit actions of a recipe's tasks: run one stage in a process of its own (or restore it from the shared
cache), and run the benchmark; each holds the recipe's build lock and turns every failure into one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from doit.exceptions import TaskFailed

from vitq.errors import INTERRUPTED_EXIT, USER_ERROR, VitqError
from vitq.orchestration import stage_process
from vitq.orchestration.cache import stage_cache
from vitq.orchestration.locks import hold_build_lock
from vitq.orchestration.stage_process import die_with_parent
from vitq.recipe import load_recipe


def run_bench(recipe_file: str, artifacts_root: str, repeats: int | None, warmup: int | None) -> bool | TaskFailed:
    """doit action: benchmark every variant in a child process (python -m vitq.bench), holding the build lock."""
    try:
        hold_build_lock(Path(artifacts_root), Path(recipe_file).stem)
    except VitqError as exc:
        return TaskFailed(str(exc))
    command = [sys.executable, "-m", "vitq.bench", recipe_file, artifacts_root]
    command += [*(["--repeats", str(repeats)] if repeats is not None else []),
                *(["--warmup", str(warmup)] if warmup is not None else [])]
    try:
        proc = subprocess.run(command, preexec_fn=die_with_parent)
    except KeyboardInterrupt:
        return TaskFailed(INTERRUPTED)
    return True if proc.returncode == 0 else TaskFailed(f"bench failed (exit {proc.returncode}); see the line above")


def run_stage(stage: str, recipe_file: str, artifacts_root: str) -> bool | TaskFailed:
    """doit action: run the stage in a process of its own (vitq.orchestration.stage_process), unless the shared cache
    (VITQ_CACHE, vitq.orchestration.cache) has its outputs; a stage that ran offers them to the cache."""
    try:
        hold_build_lock(Path(artifacts_root), Path(recipe_file).stem)
        recipe = load_recipe(recipe_file)  # once for this stage run: the cache and a forked stage take it as is
        cached = stage_cache(stage, recipe, artifacts_root)  # None without VITQ_CACHE
        if cached is not None and cached.restore():
            return True
        result = stage_process.run(stage, recipe, artifacts_root, keep_stdout=cached is not None and cached.writes)
    except VitqError as exc:
        return TaskFailed(str(exc))
    except KeyboardInterrupt:  # Ctrl-C: the stage process is killed, its temp files never become targets
        return TaskFailed(INTERRUPTED)
    if result.exitcode == 0 and result.run is not None:
        print(result.run.line(recipe.name, stage), flush=True)
        if cached is not None and cached.writes:
            cached.store_outputs(result.run, result.stdout)
        return True
    if result.exitcode == USER_ERROR and result.error:
        return TaskFailed(result.error)
    if result.exitcode == INTERRUPTED_EXIT:
        return TaskFailed(INTERRUPTED)
    return TaskFailed(f"stage {stage} crashed (exit {result.exitcode}); this is a vitq bug, output above")


INTERRUPTED = "interrupted: finished stages are kept; run the same command again to continue"
