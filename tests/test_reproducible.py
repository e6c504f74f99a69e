"""Same commit, same versions, built in two different places, or as two CPUs compute: the same bytes, down to
the release archive.

The second build runs from a copy of the checkout, through a venv reached by another path (so Python reports
other site-packages paths), with another umask, time zone, locale and home folder; or with torch, MKL and
oneDNN dispatching as on an AVX2-only machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vitq.fileio import sha256_file
from vitq.layout import ArtifactPaths
from vitq.release import make_release
from vitq.variants import VARIANTS

from conftest import copy_checkout, quick_digits, run_doit

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


# How an AVX2-only x86-64 runner computes, simulated on a newer host: torch's kernels, MKL's and oneDNN's code
# paths at the AVX2 level (onnxruntime and XNNPACK choose by CPUID and cannot be told; see vitq.numerics).
AVX2_DISPATCH = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def cpu_capability(env: dict[str, str]) -> str:
    code = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True,
                          check=True)
    return proc.stdout.strip()


def test_a_build_computed_as_on_an_avx2_machine_gives_the_same_bytes(tmp_path):
    native = cpu_capability({})
    if native not in ("AVX2", "AVX512"):
        pytest.skip(f"this CPU runs torch at {native}: below the pinned level, builds here differ by design")
    assert cpu_capability(AVX2_DISPATCH) == "AVX2"  # the setting takes effect
    recipes = tmp_path / "recipes"
    quick_digits(recipes, "quick", holdout=0.05, pte=True)  # 90 sample images: the weights decide it all
    roots = {"native": tmp_path / "native", "avx2": tmp_path / "avx2"}
    run_doit("build:quick", "release:quick", recipes=recipes, artifacts=roots["native"])
    run_doit("build:quick", "release:quick", recipes=recipes, artifacts=roots["avx2"], env=AVX2_DISPATCH)
    first, second = tree_hashes(roots["native"] / "quick"), tree_hashes(roots["avx2"] / "quick")
    assert first.keys() == second.keys()
    assert [name for name in first if first[name] != second[name]] == []
    assert {v.file for v in VARIANTS if v.file} | {"manifest.json", "report.md", "eval.json"} <= first.keys()
    assert sha256_file(roots["native"] / "releases" / "quick-1.0.0.tar.gz") == \
        sha256_file(roots["avx2"] / "releases" / "quick-1.0.0.tar.gz")
