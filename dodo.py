"""doit entry point: every recipe in recipes/ (and VITQ_RECIPES) becomes tasks.

    doit list                 the tasks          doit build:digits   build one recipe
    doit clean build:digits   remove its files   doit list --all     every stage task

No torch import here: loading this file must stay instant.
"""

import sys

from vitq.doit_state import CheckpointingReporter
from vitq.errors import VitqError
from vitq.recipe import artifacts_root

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
    from vitq.tasks import all_tasks

    try:
        yield from all_tasks(ROOT)
    except VitqError as exc:
        print(f"vitq: {exc}", file=sys.stderr)
        sys.exit(2)
