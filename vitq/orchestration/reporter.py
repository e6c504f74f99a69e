"""Make doit remember each finished stage at once, so a killed build resumes instead of starting over.

doit keeps what it learns about tasks in memory and writes its database only when it exits. A build
killed with SIGKILL (the OOM killer, a CI timeout) would forget every stage it had finished, and the
next build would redo them all: minutes of training or export for nothing. This reporter, set as
`DOIT_CONFIG["reporter"]`, prints exactly what doit's console reporter prints and, after each task
doit has recorded as successful, commits that record to the sqlite database.
"""

from __future__ import annotations

from doit.dependency import SqliteDB
from doit.globals import Globals
from doit.reporter import ConsoleReporter


class CheckpointingReporter(ConsoleReporter):
    """doit's console output, plus a database commit after every successful task."""

    desc = "console output; task state is saved after each task"

    def initialize(self, tasks, selected_tasks) -> None:
        """In the doit process, before ``doit -n N`` forks its workers: lock the recipes this run may write,
        so every worker holds the locks (vitq.orchestration.locks.lock_selected_recipes)."""
        super().initialize(tasks, selected_tasks)
        from vitq.orchestration.discovery import artifacts_root
        from vitq.orchestration.locks import lock_selected_recipes

        lock_selected_recipes(tasks, selected_tasks, artifacts_root())

    def add_success(self, task) -> None:
        super().add_success(task)  # doit has just called dep_manager.save_success(task)
        checkpoint()


def checkpoint() -> None:
    """Write the task records doit holds in memory to its sqlite database, keeping it open."""
    manager = Globals.dep_manager
    backend = getattr(manager, "backend", None)
    if not isinstance(backend, SqliteDB):  # another backend chosen on the command line: doit's own behaviour
        return
    # SqliteDB.dump() does this and then closes the connection; doit 0.37 is pinned in pyproject.toml.
    for task_id in backend._dirty:
        backend._conn.execute("insert or replace into doit values (?,?)",
                              (task_id, backend.codec.encode(backend._cache[task_id])))
    backend._conn.commit()
    backend._dirty = set()
