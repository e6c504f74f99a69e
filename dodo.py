"""doit entry point: every recipe in recipes/ (and VITQ_RECIPES) becomes tasks.

    doit list                 the tasks          doit build:digits   build one recipe
    doit clean build:digits   remove its files   doit list --all     every stage task

No torch import here: loading this file must stay instant.
"""

import sys

from vitq.errors import run_command
from vitq.orchestration.discovery import artifacts_root
from vitq.orchestration.reporter import CheckpointingReporter

ROOT = artifacts_root()
ROOT.mkdir(parents=True, exist_ok=True)

DOIT_CONFIG = {
    "dep_file": str(ROOT / ".doit.db"),
    "backend": "sqlite3",
    "reporter": CheckpointingReporter,  # saves each finished stage at once: a killed build resumes
    "default_tasks": ["build:digits"],
    "verbosity": 2,
    "cleandep": True,  # `doit clean build:x` removes what build:x's stages made
}


def task_vitq():
    """vitq build stages (one task group per stage, one sub-task per recipe)"""
    from vitq.orchestration.tasks import all_tasks

    tasks: list[dict] = []
    code = run_command(lambda: tasks.extend(all_tasks(ROOT)) or 0, prefix="vitq: ")
    if code:
        sys.exit(code)
    yield from tasks
