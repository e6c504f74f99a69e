"""Same recipe, same versions, two clean output roots: the same bytes, down to the release archive."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile

from conftest import run_doit
from vitq.bench import bench_files
from vitq.fileio import sha256_file
from vitq.layout import ArtifactPaths


def tree_hashes(folder):
    """Hashes of what `doit build` wrote: not the build log (timings), nor what `doit bench` (which another test
    runs on the shared build) adds."""
    paths = ArtifactPaths.for_recipe(folder.parent, folder.name)
    not_built = {paths.build_log, *bench_files(paths).values()}
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p not in not_built}


def test_two_clean_builds_of_digits_are_byte_identical(digits_build, tmp_path):
    second_root = tmp_path / "second"
    run_doit("build:digits", artifacts=second_root)
    first, second = tree_hashes(digits_build), tree_hashes(second_root / "digits")
    assert first.keys() == second.keys()
    differing = [name for name in first if first[name] != second[name]]
    assert differing == []
    assert {"manifest.json", "int8.ptl", "int8.pt", "fp32.safetensors", "fp32.onnx", "int8.onnx"} <= first.keys()


def test_release_is_deterministic_complete_and_verifiable(digits_build, tmp_path):
    cli = [sys.executable, "-m", "vitq.cli", "release", str(digits_build), "--json"]
    one = subprocess.run([*cli, "--out", str(tmp_path / "one")], capture_output=True, text=True)
    two = subprocess.run([*cli, "--out", str(tmp_path / "two")], capture_output=True, text=True)
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    first, second = json.loads(one.stdout), json.loads(two.stdout)
    assert first["release"].endswith("digits-1.0.0.tar.gz")
    assert first["sha256"] == second["sha256"] == sha256_file(tmp_path / "one" / "digits-1.0.0.tar.gz")

    with tarfile.open(first["release"]) as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == "" for m in members)
        assert "digits-1.0.0/SHA256SUMS" in names and "digits-1.0.0/int8.ptl" in names
        assert "digits-1.0.0/samples/labels.csv" in names
        tar.extractall(tmp_path / "unpacked", filter="data")
    unpacked = tmp_path / "unpacked" / "digits-1.0.0"
    for line in (unpacked / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ", 1)
        assert sha256_file(unpacked / name) == digest
    verify = subprocess.run([sys.executable, "-m", "vitq.cli", "verify", str(unpacked / "manifest.json"), "--json"],
                            capture_output=True, text=True)
    assert verify.returncode == 0 and json.loads(verify.stdout)["ok"] is True, verify.stdout + verify.stderr


def test_a_tampered_build_is_not_released(digits_build, tmp_path):
    import shutil

    copy = tmp_path / "digits"
    shutil.copytree(digits_build, copy)
    (copy / "int8.ptl").write_bytes(b"not a model")
    proc = subprocess.run([sys.executable, "-m", "vitq.cli", "release", str(copy), "--out", str(tmp_path / "rel")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "not releasable" in proc.stderr and "int8.ptl" in proc.stderr
    assert not (tmp_path / "rel" / "digits-1.0.0.tar.gz").exists()
