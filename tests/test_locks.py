"""vitq.orchestration.locks: one build per recipe output folder at a time, across processes; other recipes build beside it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vitq.errors import VitqError
from vitq.fileio import TMP_PREFIX
from vitq.orchestration import locks

HOLD = ("import sys, time; from pathlib import Path; from vitq.orchestration.locks import hold_build_lock; "
        "hold_build_lock(Path(sys.argv[1]), sys.argv[2]); print('held', flush=True); time.sleep(60)")


@pytest.fixture
def other_build(tmp_path):
    """Another process holding recipe a's lock under tmp_path, until the test ends."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path), "a"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "held\n"
    yield proc
    proc.kill()
    proc.wait()


def test_a_recipe_another_process_builds_is_refused_in_one_line(tmp_path, monkeypatch, other_build):
    monkeypatch.setattr(locks, "_held_locks", {})
    with pytest.raises(VitqError) as refused:
        locks.hold_build_lock(tmp_path, "a")
    assert "another vitq build is writing this output folder" in str(refused.value)
    assert "\n" not in str(refused.value)
    locks.hold_build_lock(tmp_path, "b")  # another recipe in the same root: free
    assert (tmp_path / ".locks" / "b.lock").exists() and not (tmp_path / "b" / ".locks").exists()


def test_taking_the_lock_removes_temp_files_of_a_killed_build(tmp_path, monkeypatch):
    monkeypatch.setattr(locks, "_held_locks", {})
    folder = tmp_path / "a"
    folder.mkdir()
    (folder / f"{TMP_PREFIX}123").mkdir()
    (folder / f"{TMP_PREFIX}123" / "int8.pt").write_bytes(b"half")
    (folder / "int8.pt").write_bytes(b"whole")
    locks.hold_build_lock(tmp_path, "a")
    assert sorted(p.name for p in folder.iterdir()) == ["int8.pt"]
    locks.hold_build_lock(tmp_path, "a")  # held already by this process: no second lock, no error
