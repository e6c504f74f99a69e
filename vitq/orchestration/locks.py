"""One build at a time per recipe output folder: file locks held by the doit process until it exits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vitq.errors import VitqError
from vitq.fileio import remove_stale_temps
from vitq.orchestration.pipeline import STAGES

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
