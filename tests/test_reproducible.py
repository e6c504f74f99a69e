"""Same commit, same versions, built in two different places: the same bytes, down to the release archive.

The second build runs from a copy of the checkout, through a venv reached by another path (so Python reports
other site-packages paths), with another umask, time zone, locale and home folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vitq.fileio import sha256_file
from vitq.layout import ArtifactPaths
from vitq.release import make_release
from vitq.variants import VARIANTS

from conftest import copy_checkout, run_doit

pytestmark = pytest.mark.e2e


def tree_hashes(folder):
    """Hashes of what `doit build` wrote: not the build log (timings), nor what `doit bench` (which another test
    runs on the shared build) adds."""
    paths = ArtifactPaths.for_recipe(folder.parent, folder.name)
    not_built = {paths.build_log, *paths.bench_files.values()}
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p not in not_built}


def other_place(tmp_path: Path) -> tuple[Path, str, dict[str, str]]:
    """A checkout copy, a python of the same venv reached through a symlink, and another user's settings."""
    checkout = copy_checkout(tmp_path / "elsewhere" / "checkout-b")
    venv = tmp_path / "elsewhere" / "venv-b"
    venv.symlink_to(Path(sys.prefix), target_is_directory=True)
    home = tmp_path / "elsewhere" / "home-b"
    home.mkdir()
    env = {"TZ": "Pacific/Chatham", "LC_ALL": "POSIX", "LANG": "de_DE.UTF-8", "HOME": str(home)}
    return checkout, str(venv / "bin" / "python"), env


def test_builds_in_two_places_and_their_releases_are_byte_identical(digits_build, tmp_path):
    checkout, python, env = other_place(tmp_path)
    second_root = tmp_path / "elsewhere" / "artifacts"
    run_doit("build:digits", "release:digits", artifacts=second_root, repo=checkout, python=python,
                    env=env, umask=0o027)
    timm_there = subprocess.run([python, "-c", "import timm; print(timm.__file__)"], capture_output=True, text=True)
    assert timm_there.stdout.startswith(str(tmp_path / "elsewhere" / "venv-b" / "lib"))  # Python sees another path
    assert "no_build_paths" in (second_root / "digits" / "manifest.json").read_text()
    first, second = tree_hashes(digits_build), tree_hashes(second_root / "digits")
    assert first.keys() == second.keys()
    differing = [name for name in first if first[name] != second[name]]
    assert differing == []
    assert {v.file for v in VARIANTS if v.file} | {"manifest.json", "report.md", "eval.json"} <= first.keys()
    release = make_release(digits_build, tmp_path / "first")
    assert sha256_file(release) == sha256_file(second_root / "releases" / "digits-1.0.0.tar.gz")
