"""Releases: a deterministic tarball of a verified build, with SHA256SUMS; a tampered build is refused."""

from __future__ import annotations

import shutil
import tarfile

import pytest

from vitq.errors import VitqError
from vitq.fileio import sha256_file
from vitq.ship.release import make_release
from vitq.ship.verify import verify


def test_release_is_deterministic_complete_and_verifiable(tiny_build, tmp_path):
    one = make_release(tiny_build.root, tmp_path / "one")
    two = make_release(tiny_build.root, tmp_path / "two")
    assert one.name == "tiny-0.0.0.tar.gz" and sha256_file(one) == sha256_file(two)
    with tarfile.open(one) as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == "" for m in members)
        assert {"tiny-0.0.0/SHA256SUMS", "tiny-0.0.0/int8.ptl", "tiny-0.0.0/samples/labels.csv"} <= set(names)
        assert not [n for n in names if n.endswith((".jsonl", "bench.json"))]
        tar.extractall(tmp_path / "unpacked", filter="data")
    unpacked = tmp_path / "unpacked" / "tiny-0.0.0"
    for line in (unpacked / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ", 1)
        assert sha256_file(unpacked / name) == digest
    assert verify(unpacked / "manifest.json") == []


def test_a_tampered_build_is_not_released(tiny_build, tmp_path):
    copy = tmp_path / "tiny"
    shutil.copytree(tiny_build.root, copy)
    (copy / "int8.ptl").write_bytes(b"not a model")
    with pytest.raises(VitqError, match="not releasable: .*int8.ptl"):
        make_release(copy, tmp_path / "rel")
    assert not (tmp_path / "rel" / "tiny-0.0.0.tar.gz").exists()
