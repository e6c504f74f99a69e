"""Recipes -> doit task dicts. Runs inside dodo.py, so it must not import torch."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from doit.exceptions import TaskFailed
from doit.tools import config_changed

from vitq.errors import USER_ERROR, VitqError
from vitq.fileio import remove_stale_temps
from vitq.fingerprint import canonical, stage_fingerprint
from vitq.layout import ArtifactPaths
from vitq.pipeline import STAGES, model_files, stages_for
from vitq.recipe import Recipe, discover, load_recipe
from vitq.runner import HASH_SEED


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
        hold_build_lock(Path(artifacts_root))
    except VitqError as exc:
        return TaskFailed(str(exc))
    command = [sys.executable, "-m", "vitq.bench", recipe_file, artifacts_root]
    command += [*(["--repeats", str(repeats)] if repeats is not None else []),
                *(["--warmup", str(warmup)] if warmup is not None else [])]
    try:
        proc = subprocess.run(command, preexec_fn=_die_with_parent)
    except KeyboardInterrupt:
        return TaskFailed(INTERRUPTED)
    return True if proc.returncode == 0 else TaskFailed(f"bench failed (exit {proc.returncode}); see the line above")


def run_stage(stage: str, recipe_file: str, artifacts_root: str) -> bool | TaskFailed:
    """doit action: run the stage in a child process with a fixed hash seed (see vitq.runner)."""
    try:
        hold_build_lock(Path(artifacts_root))
    except VitqError as exc:
        return TaskFailed(str(exc))
    env = {**os.environ, "PYTHONHASHSEED": HASH_SEED}
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "vitq.runner", stage, recipe_file, artifacts_root],
            env=env, stderr=subprocess.PIPE, text=True, preexec_fn=_die_with_parent,
        )
    except KeyboardInterrupt:  # Ctrl-C: the stage process is killed, its temp files never become targets
        return TaskFailed(INTERRUPTED)
    if proc.returncode == 0:
        return True
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    if proc.returncode == USER_ERROR and lines:
        return TaskFailed(user_error(lines))
    sys.stderr.write(proc.stderr)
    return TaskFailed(f"stage {stage} crashed (exit {proc.returncode}); this is a vitq bug, output above")


def user_error(stderr_lines: list[str]) -> str:
    """The stage's error: its last line, or a "<file>: N problems" header and the N lines after it."""
    for i in range(len(stderr_lines) - 1, -1, -1):
        found = PROBLEMS_HEADER.search(stderr_lines[i])
        if found and len(stderr_lines) - i - 1 == int(found.group(1)):
            return "\n".join(stderr_lines[i:])
    return stderr_lines[-1]


PROBLEMS_HEADER = re.compile(r": (\d+) problems$")
INTERRUPTED = "interrupted: finished stages are kept; run the same command again to continue"

_held_locks: dict[Path, Any] = {}


def hold_build_lock(artifacts_root: Path) -> None:
    """One build at a time per output folder, held until this doit process exits (even if killed).

    Taken by the first stage that runs, so `doit list` or a no-op build never waits or fails.
    """
    from filelock import FileLock, Timeout

    root = artifacts_root.absolute()
    if root in _held_locks:
        return
    root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(root / ".vitq-build.lock"), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise VitqError(f"{root}: another vitq build is writing this output folder; wait for it to finish "
                        "or set VITQ_ARTIFACTS to another folder") from None
    _held_locks[root] = lock
    for folder in root.iterdir():  # temp files of a killed build; nothing else writes here now
        if folder.is_dir():
            remove_stale_temps(folder)


def _die_with_parent() -> None:
    """Linux: a stage process dies with its doit process, so a killed build leaves no orphan writing files."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _broken(name: str, message: str) -> dict[str, Any]:
    return {
        "basename": "build",
        "name": name,
        "doc": f"BROKEN RECIPE: {message}",
        "actions": [lambda: TaskFailed(message)],
        "verbosity": 2,
    }
