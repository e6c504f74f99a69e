"""Same recipe, same versions, two clean output roots: the same bytes, down to the release archive."""

from __future__ import annotations

import pytest

from vitq.fileio import sha256_file
from vitq.layout import ArtifactPaths
from vitq.release import make_release
from vitq.variants import VARIANTS

from conftest import run_doit

pytestmark = pytest.mark.e2e


def tree_hashes(folder):
    """Hashes of what `doit build` wrote: not the build log (timings), nor what `doit bench` (which another test
    runs on the shared build) adds."""
    paths = ArtifactPaths.for_recipe(folder.parent, folder.name)
    not_built = {paths.build_log, *paths.bench_files.values()}
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p not in not_built}


def test_two_clean_builds_of_digits_and_their_releases_are_byte_identical(digits_build, tmp_path):
    second_root = tmp_path / "second"
    run_doit("build:digits", "release:digits", artifacts=second_root)
    first, second = tree_hashes(digits_build), tree_hashes(second_root / "digits")
    assert first.keys() == second.keys()
    differing = [name for name in first if first[name] != second[name]]
    assert differing == []
    assert {v.file for v in VARIANTS if v.file} | {"manifest.json", "report.md", "eval.json"} <= first.keys()
    release = make_release(digits_build, tmp_path / "first")
    assert sha256_file(release) == sha256_file(second_root / "releases" / "digits-1.0.0.tar.gz")
