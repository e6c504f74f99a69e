"""Same commit, same versions, built in two different places on two CPUs: the same bytes, down to the release
archive.

The second build runs from a copy of the checkout, through a venv reached by another path (so Python reports
other site-packages paths), with another umask, time zone, locale and home folder, and with torch, MKL and
oneDNN dispatching as on an AVX2-only machine (one build for both: each is a full build of minutes)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vitq.fileio import sha256_file
from vitq.layout import ArtifactPaths
from vitq.recipe import load_recipe
from vitq.variants import variants_for

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


# How an AVX2-only x86-64 runner computes, simulated on a newer host: torch's kernels, MKL's and oneDNN's code
# paths at the AVX2 level (onnxruntime and XNNPACK choose by CPUID and cannot be told; see vitq.numerics).
AVX2_DISPATCH = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def cpu_capability(env: dict[str, str]) -> str:
    code = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True,
                          check=True)
    return proc.stdout.strip()


def test_builds_in_two_places_on_two_cpus_give_byte_identical_files_and_releases(tmp_path):
    """The second build differs in checkout, venv path, user's home, umask, time zone, locale and CPU dispatch (as
    an AVX2-only machine computes); a small digits recipe with the .pte: the weights it trains decide it all."""
    native = cpu_capability({})
    if native not in ("AVX2", "AVX512"):
        pytest.skip(f"this CPU runs torch at {native}: below the pinned level, builds here differ by design")
    assert cpu_capability(AVX2_DISPATCH) == "AVX2"  # the setting takes effect
    recipes = tmp_path / "recipes"
    quick_digits(recipes, "quick", holdout=0.05, pte=True)  # 90 sample images
    first_root = tmp_path / "here"
    run_doit("-n", "2", "build:quick", "release:quick", recipes=recipes, artifacts=first_root)  # 2 stages at a time
    checkout, python, env = other_place(tmp_path)
    second_root = tmp_path / "elsewhere" / "artifacts"
    recipes_there = shutil.copytree(recipes, tmp_path / "elsewhere" / "recipes")
    run_doit("-n", "2", "build:quick", "release:quick", recipes=recipes_there, artifacts=second_root, repo=checkout, python=python,
             env={**env, **AVX2_DISPATCH}, umask=0o027)
    timm_there = subprocess.run([python, "-c", "import timm; print(timm.__file__)"], capture_output=True, text=True)
    assert timm_there.stdout.startswith(str(tmp_path / "elsewhere" / "venv-b" / "lib"))  # Python sees another path
    assert "no_build_paths" in (second_root / "quick" / "manifest.json").read_text()
    first, second = tree_hashes(first_root / "quick"), tree_hashes(second_root / "quick")
    assert first.keys() == second.keys()
    assert [name for name in first if first[name] != second[name]] == []
    built = variants_for(load_recipe(recipes / "quick.yaml"))  # digits' two ExecuTorch candidates among them
    assert {v.file for v in built if v.file} | {"manifest.json", "report.md", "eval.json"} <= first.keys()
    assert sha256_file(first_root / "releases" / "quick-1.0.0.tar.gz") == \
        sha256_file(second_root / "releases" / "quick-1.0.0.tar.gz")
