"""Recipes -> doit task dicts. Runs inside dodo.py, so it must not import torch."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from doit.exceptions import TaskFailed
from doit.tools import config_changed

from vitq import stage_process
from vitq.cache import stage_cache
from vitq.errors import INTERRUPTED_EXIT, USER_ERROR, VitqError
from vitq.fileio import remove_stale_temps
from vitq.fingerprint import canonical, stage_fingerprint
from vitq.layout import ArtifactPaths
from vitq.pipeline import STAGES, model_files, stages_for
from vitq.recipe import Recipe, discover, load_recipe
from vitq.stage_process import die_with_parent, user_error  # noqa: F401  (user_error: part of this API)


def all_tasks(artifacts_root: Path) -> Iterator[dict[str, Any]]:
    """Every task for every recipe found. A broken recipe becomes a task that fails with its one-line error."""
    yield {"basename": "build", "name": None, "doc": "build every artifact of a recipe: doit build:<recipe>"}
    yield {"basename": "release", "name": None, "doc": "deterministic .tar.gz of a verified build: doit release:<recipe>"}
    yield {"basename": "bench", "name": None, "doc": "latency, size and memory of every variant: doit bench:<recipe>"}
    yield {"basename": "verify", "name": None, "doc": "check a build against its manifest: doit verify:<recipe>"}
    for stage in STAGES:
        yield {"basename": stage.name, "name": None, "doc": stage.doc}
    for name, path in discover().items():
        try:
            recipe = load_recipe(path)
            paths = ArtifactPaths.for_recipe(artifacts_root, recipe.name)
        except VitqError as exc:
            yield _broken(name, str(exc))
            continue
        yield from recipe_tasks(recipe, paths)


def recipe_tasks(recipe: Recipe, paths: ArtifactPaths) -> Iterator[dict[str, Any]]:
    names = []
    for stage in stages_for(recipe):
        # Reruns when the stage's code, the recipe fields it reads or its tools change; doit hashes the files.
        config = stage_fingerprint(stage, recipe)
        names.append(f"{stage.name}:{recipe.name}")
        outputs = stage.outputs(recipe, paths).values()
        yield {
            "basename": stage.name,
            "name": recipe.name,
            "doc": f"{stage.doc} -> {', '.join(p.relative_to(paths.root).as_posix() for p in outputs)}",
            "actions": [(run_stage, [stage.name, recipe.source, str(paths.root.parent)])],
            "file_dep": [str(p) for p in stage.inputs(recipe, paths).values()],
            "targets": [str(p) for p in outputs],
            "uptodate": [config_changed(canonical(config))],
            "clean": True,
            "verbosity": 2,
        }
    yield {
        "basename": "build",
        "name": recipe.name,
        "doc": f"build every artifact of recipe {recipe.name}",
        "actions": None,
        "task_dep": names,
    }
    yield {
        "basename": "release",
        "name": recipe.name,
        "doc": f"pack recipe {recipe.name}'s verified build into releases/{recipe.name}-{recipe.version}.tar.gz",
        "actions": [[sys.executable, "-m", "vitq.cli", "release", str(paths.root), "--out", str(paths.release_dir)]],
        "file_dep": [str(paths.manifest)],
        "targets": [str(paths.release_dir / f"{recipe.name}-{recipe.version}.tar.gz")],
        "clean": True,
        "verbosity": 2,
    }
    yield {
        "basename": "bench",
        "name": recipe.name,
        "doc": f"latency, size and memory of every variant of {recipe.name} -> bench.json, bench.md, bench.png",
        "actions": [(run_bench, [recipe.source, str(paths.root.parent)])],
        "file_dep": [str(p) for p in bench_inputs(recipe, paths)],
        "targets": [str(p) for p in paths.bench_files.values()],
        "uptodate": [False],
        "clean": True,
        "verbosity": 2,
        "params": [  # doit bench:<recipe> --repeats 50 --warmup 5
            {"name": "repeats", "long": "repeats", "type": int, "default": None,
             "help": "timed runs per variant and batch size (default: python -m vitq.bench's)"},
            {"name": "warmup", "long": "warmup", "type": int, "default": None,
             "help": "untimed runs first (default: python -m vitq.bench's)"},
        ],
    }
    yield {
        "basename": "verify",
        "name": recipe.name,
        "doc": f"re-hash, reload and re-run recipe {recipe.name}'s artifacts against its manifest",
        "actions": [[sys.executable, "-m", "vitq.cli", "verify", str(paths.manifest)]],
        "file_dep": [str(paths.manifest)],
        "uptodate": [False],
        "verbosity": 2,
    }


def bench_inputs(recipe: Recipe, paths: ArtifactPaths) -> list[Path]:
    """The build outputs a benchmark reads: every variant's file and the sample images."""
    return [*model_files(recipe, paths).values(), paths.samples_labels]


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
    """doit action: run the stage in a process of its own (vitq.stage_process), unless the shared cache
    (VITQ_CACHE, vitq.cache) has its outputs; a stage that ran offers them to the cache."""
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

_held_locks: dict[Path, Any] = {}
# Tasks that write into a recipe's folder, or may make doit run its stages (release needs the manifest).
LOCKED_TASKS = {*(stage.name for stage in STAGES), "build", "bench", "release"}


def hold_build_lock(artifacts_root: Path, recipe: str) -> None:
    """One build at a time per recipe's output folder, held until this doit process exits (even if killed).
    Other recipes in the same root build at the same time (``doit -n N``, or another doit).

    Taken by the doit process before it starts parallel workers (``lock_selected_recipes``), so they share
    it; otherwise by the first stage that runs, so `doit list` or a no-op build never waits or fails.
    """
    from filelock import FileLock, Timeout

    folder = (Path(artifacts_root) / recipe).absolute()
    if folder in _held_locks:
        return
    locks = folder.parent / ".locks"  # beside the build folders: nothing in a build but the build
    locks.mkdir(parents=True, exist_ok=True)
    folder.mkdir(exist_ok=True)
    lock = FileLock(str(locks / f"{recipe}.lock"), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise VitqError(f"{folder}: another vitq build is writing this output folder; wait for it to finish "
                        "or set VITQ_ARTIFACTS to another folder") from None
    _held_locks[folder] = lock
    remove_stale_temps(folder)  # temp files of a killed build; nothing else writes here now


def lock_selected_recipes(tasks: dict[str, Any], selected: list[str], artifacts_root: Path) -> None:
    """Before doit forks its workers (``-n N``): lock every recipe the run may write, so all workers hold the
    locks. A recipe another build holds is left: its first stage then fails with the one-line reason."""
    recipes: set[str] = set()
    todo = list(selected)
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen or name not in tasks:
            continue
        seen.add(name)
        todo.extend(tasks[name].task_dep)
        base, _, recipe = name.partition(":")
        if recipe and base in LOCKED_TASKS:
            recipes.add(recipe)
    for recipe in sorted(recipes):
        try:
            hold_build_lock(artifacts_root, recipe)
        except VitqError:
            pass


def _broken(name: str, message: str) -> dict[str, Any]:
    return {
        "basename": "build",
        "name": name,
        "doc": f"BROKEN RECIPE: {message}",
        "actions": [lambda: TaskFailed(message)],
        "verbosity": 2,
    }
