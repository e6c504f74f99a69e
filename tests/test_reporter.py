"""vitq.orchestration.reporter on doit's own classes (no doit process): each task the reporter sees finish is in the sqlite
file at once, so a build killed before doit writes its database (it does so only on exit) still remembers it;
the console output is doit's; initialize locks the recipes the selected tasks may write."""

from __future__ import annotations

import io
import sqlite3

import pytest
from doit.dependency import Dependency, JsonDB, SqliteDB
from doit.globals import Globals
from doit.reporter import ConsoleReporter
from doit.task import Task

from vitq.orchestration import locks as vitq_locks
from vitq.orchestration.reporter import CheckpointingReporter, checkpoint


def noop():
    return None


@pytest.fixture
def inputs(tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("weights")
    return source


def stage_task(name, source):
    return Task(name, [noop], file_dep=[str(source)])


def opened(monkeypatch, backend, path):
    """A dependency manager as doit opens one for a run, made the one doit's reporter finds."""
    manager = Dependency(backend, str(path))
    monkeypatch.setattr(Globals, "dep_manager", manager)
    return manager


def saved_ids(db):
    """What another process (the next build) reads from the file now."""
    with sqlite3.connect(db) as conn:
        return {row[0] for row in conn.execute("select task_id from doit")}


def test_each_finished_task_is_in_the_database_before_doit_closes_it(monkeypatch, inputs, tmp_path):
    db = tmp_path / ".doit.db"
    manager = opened(monkeypatch, SqliteDB, db)
    reporter = CheckpointingReporter(io.StringIO(), {})
    fp32, samples = stage_task("fp32:tiny", inputs), stage_task("samples:tiny", inputs)
    for task in (fp32, samples):
        manager.save_success(task)  # what doit does just before it tells the reporter
        reporter.add_success(task)
        assert task.name in saved_ids(db)
    # the next build (the database never closed: a SIGKILL) finds both up to date
    later = Dependency(SqliteDB, str(db))
    assert [later.get_status(t, {}).status for t in (fp32, samples)] == ["up-to-date", "up-to-date"]
    inputs.write_text("other weights")
    assert Dependency(SqliteDB, str(db)).get_status(stage_task("fp32:tiny", inputs), {}).status == "run"


def test_without_the_checkpoint_a_killed_build_forgets_what_it_finished(monkeypatch, inputs, tmp_path):
    """What the reporter is for: doit alone keeps a finished task in memory only."""
    db = tmp_path / ".doit.db"
    manager = opened(monkeypatch, SqliteDB, db)
    fp32 = stage_task("fp32:tiny", inputs)
    manager.save_success(fp32)
    ConsoleReporter(io.StringIO(), {}).add_success(fp32)
    assert saved_ids(db) == set()
    assert Dependency(SqliteDB, str(db)).get_status(fp32, {}).status == "run"
    checkpoint()
    assert Dependency(SqliteDB, str(db)).get_status(fp32, {}).status == "up-to-date"


def test_the_database_stays_open_for_the_rest_of_the_build(monkeypatch, inputs, tmp_path):
    db = tmp_path / ".doit.db"
    manager = opened(monkeypatch, SqliteDB, db)
    reporter = CheckpointingReporter(io.StringIO(), {})
    first, second = stage_task("fp32:tiny", inputs), stage_task("int8:tiny", inputs)
    manager.save_success(first)
    reporter.add_success(first)
    manager.save_success(second)
    manager.close()  # doit's own dump at exit still works and writes the rest
    assert saved_ids(db) == {"fp32:tiny", "int8:tiny"}


def test_a_failed_task_is_not_saved(monkeypatch, inputs, tmp_path):
    from doit.exceptions import TaskFailed

    db = tmp_path / ".doit.db"
    opened(monkeypatch, SqliteDB, db)
    reporter = CheckpointingReporter(io.StringIO(), {})
    reporter.add_failure(stage_task("fp32:tiny", inputs), TaskFailed("tiny.yaml: weights.file: file not found"))
    assert saved_ids(db) == set()


def test_another_backend_is_left_to_doit(monkeypatch, inputs, tmp_path):
    db = tmp_path / "state.json"
    manager = opened(monkeypatch, JsonDB, db)
    task = stage_task("fp32:tiny", inputs)
    manager.save_success(task)
    CheckpointingReporter(io.StringIO(), {}).add_success(task)  # no error, nothing written early
    assert not db.exists() or "fp32:tiny" not in db.read_text()
    manager.close()
    assert "fp32:tiny" in db.read_text()


def test_the_console_output_is_doits(monkeypatch, inputs, tmp_path):
    opened(monkeypatch, SqliteDB, tmp_path / ".doit.db")
    outputs = {}
    for cls in (ConsoleReporter, CheckpointingReporter):
        out = io.StringIO()
        reporter = cls(out, {})
        ran, skipped, hidden = stage_task("fp32:tiny", inputs), stage_task("samples:tiny", inputs), \
            stage_task("_private", inputs)
        for task in (ran, hidden):
            reporter.execute_task(task)
            reporter.add_success(task)
        reporter.skip_uptodate(skipped)
        reporter.complete_run()
        outputs[cls] = out.getvalue()
    assert outputs[CheckpointingReporter] == outputs[ConsoleReporter] == ".  fp32:tiny\n-- samples:tiny\n"
    assert "saved after each task" in CheckpointingReporter.desc


def test_initialize_locks_every_recipe_the_selected_tasks_may_write(monkeypatch, inputs, tmp_path):
    """The doit process takes the locks before `doit -n N` forks workers: the selected build and the recipes its
    task dependencies reach; a task that writes nothing (list, a stage of no recipe) locks nothing."""
    from filelock import FileLock, Timeout

    monkeypatch.setattr(vitq_locks, "_held_locks", {})  # the locks this test takes are dropped after it
    monkeypatch.setenv("VITQ_ARTIFACTS", str(tmp_path / "artifacts"))
    opened(monkeypatch, SqliteDB, tmp_path / ".doit.db")
    graph = {
        "build:a": Task("build:a", None, task_dep=["manifest:a", "release:b"]),
        "manifest:a": Task("manifest:a", [noop]),
        "release:b": Task("release:b", [noop]),
        "build:c": Task("build:c", None),
        "info": Task("info", [noop]),
    }
    CheckpointingReporter(io.StringIO(), {}).initialize(graph, ["build:a", "info"])
    locks = tmp_path / "artifacts" / ".locks"
    assert sorted(p.name for p in locks.iterdir()) == ["a.lock", "b.lock"]
    for recipe in ("a", "b"):  # held: another build of these recipes is refused
        with pytest.raises(Timeout):
            FileLock(str(locks / f"{recipe}.lock"), timeout=0).acquire()
    FileLock(str(locks / "c.lock"), timeout=0).acquire()  # not selected: free
