"""Atomic writes keep the final file name and leave nothing half-written; hashes are sha256."""

from __future__ import annotations

import hashlib
import os

import pytest

from vitq.fileio import TMP_PREFIX, atomic_path, remove_stale_temps, sha256_file, write_text


def test_the_temporary_file_has_the_final_name_and_replaces_the_target_only_on_success(tmp_path):
    target = tmp_path / "out" / "int8.ptl"
    with atomic_path(target) as tmp:
        assert tmp.name == "int8.ptl" and tmp.parent.name.startswith(TMP_PREFIX)
        tmp.write_text("new")
        assert not target.exists()
    assert target.read_text() == "new" and not list(target.parent.glob(f"{TMP_PREFIX}*"))


def test_a_failure_leaves_the_old_file_and_no_temporary_folder(tmp_path):
    target = tmp_path / "model.pt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["model.pt"]


def test_a_whole_folder_is_replaced_at_once(tmp_path):
    folder = tmp_path / "samples"
    for content in ("one", "two"):
        with atomic_path(folder) as tmp:
            tmp.mkdir()
            (tmp / "labels.csv").write_text(content)
    assert (folder / "labels.csv").read_text() == "two" and os.listdir(tmp_path) == ["samples"]


def test_finished_files_get_the_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644


def test_stale_temporary_folders_of_a_killed_build_are_removed(tmp_path):
    (tmp_path / f"{TMP_PREFIX}abc").mkdir()
    (tmp_path / "keep.txt").write_text("x")
    remove_stale_temps(tmp_path)
    assert os.listdir(tmp_path) == ["keep.txt"]


def test_sha256_file(tmp_path):
    (tmp_path / "f").write_bytes(b"vitq")
    assert sha256_file(tmp_path / "f") == hashlib.sha256(b"vitq").hexdigest()
