"""vitq verify --arch arm64, the parts that need no emulator: options, runtimes, judging, the record and the
release that leaves it out. The emulated runs themselves are the arm tier (tests/test_arm64.py, make test-arm)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vitq.errors import VitqError
from vitq.ship.arm64 import record, targets
from vitq.ship.arm64.check import Run, _judge
from vitq.ship.arm64.runtime_env import Environment, linked_functions
from vitq.ship.release import make_release


def test_runtimes_are_pinned_or_a_known_executorch_release():
    assert targets.pinned().packages[0] == f"torch=={torch.__version__.split('+')[0]}"
    release = targets.runtime("executorch==1.5.1")
    assert release.packages[:2] == ("torch==2.14.1", "executorch==1.5.1") and release.formats == ("executorch",)
    with pytest.raises(VitqError, match=r"--runtime executorch==9.9: unknown runtime; known: pinned, executorch==1.5.1"):
        targets.runtime("executorch==9.9")


def test_the_default_cpu_models_are_one_per_kernel_family_and_unknown_ones_are_refused():
    families = [cpu.family for cpu in targets.cpu_models(None)]
    assert families == ["NEON only (ARMv8.0)", "dot product (ARMv8.2)", "i8mm + SVE", "SME2"]
    with pytest.raises(VitqError, match="--cpu cortex-x9: the emulator has no such CPU model; it has max, a53"):
        targets.cpu_models(["cortex-x9"], ["max", "a53"])


@pytest.mark.parametrize(("args", "message"), [
    (["--cpu", "max"], "vitq: --cpu applies to --arch arm64 only"),
    (["--arch", "arm64", "--limit", "0"], "vitq: --limit 0: give a number of images, 1 or more"),
    (["--arch", "arm64", "--no-rerun"], "vitq: --no-rerun does not apply to --arch arm64"),
])
def test_arm64_options_are_checked_in_one_line(tmp_path, args, message):
    proc = subprocess.run([sys.executable, "-m", "vitq.cli", "verify", str(tmp_path), *args], capture_output=True,
                          text=True)
    assert proc.returncode == 2 and proc.stderr.strip().startswith(message) and len(proc.stderr.splitlines()) == 1


def test_the_stub_lists_the_functions_torch_links_from_cupti():
    library = Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"
    functions = linked_functions(library, "libcupti.so.13")
    assert {"cuptiFinalize", "cuptiSubscribe", "cuptiActivityEnable"} <= functions
    assert all(name.startswith("cupti") for name in functions)


def _run(cpu: str = "cortex-a53") -> Run:
    env = Environment("aarch64", targets.pinned(), ("python",))
    return Run(env, targets.BY_NAME[cpu], ({"name": "int8.pte", "format": "executorch", "path": "/b/int8.pte"},))


def _result(logits: np.ndarray, error: float = 0.0, capabilities: tuple[str, ...] = ("asimd",)) -> dict:
    return {"seconds": 1.0, "capabilities": list(capabilities), "known_answer": {"max_abs_error": error},
            "files": {"int8.pte": {"seconds": 0.5}}, "logits": {"int8.pte": logits}, "errors": {}}


def test_a_run_that_computes_something_else_than_x86_fails_naming_file_cpu_and_figure(tiny_build):
    from vitq.recipe import load_recipe

    recipe = load_recipe(tiny_build.root.parent.parent / "tiny.yaml")
    x86 = np.array([[4.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 2.0], [2.0, 0.5, 0.0]], np.float32)
    labels = [{0}, {1}, {2}, {0}]
    entry, problems = _judge(recipe, _run(), _result(x86 + 1e-4), x86, labels, {"int8.pte": x86})
    assert problems == [] and entry["files"]["int8.pte"]["agreement_x86"] == 1.0
    wrong = x86.copy()
    wrong[:, 2] += 10
    entry, problems = _judge(recipe, _run(), _result(wrong), x86, labels, {"int8.pte": x86})
    assert "/b/int8.pte: on arm64 cortex-a53 (pinned): agreement with x86 0.25, needs >= 0.98" in problems
    assert "/b/int8.pte: on arm64 cortex-a53 (pinned): max |dlogit| vs x86 10, needs <= 0.2" in problems
    assert entry["files"]["int8.pte"]["passed"] is False


def test_an_emulator_that_fails_the_known_answer_or_lacks_the_family_is_not_trusted(tiny_build):
    from vitq.recipe import load_recipe

    recipe = load_recipe(tiny_build.root.parent.parent / "tiny.yaml")
    x86 = np.eye(3, dtype=np.float32)
    entry, problems = _judge(recipe, _run("max"), _result(x86, error=208972.0), x86, [{0}, {1}, {2}],
                             {"int8.pte": x86})
    assert problems[0] == ("arm64 max (pinned): the emulated CPU does not present the SME2 family (missing asimddp, "
                           "i8mm, sve, sme, sme2, present nothing that it must not have)")
    assert problems[1].startswith("arm64 max (pinned): the known-answer check failed (max error 208972, needs 0)")
    assert entry["files"] == {} and len(problems) == 2  # no file judged on an untrusted emulator


def test_record_paths_sit_beside_the_build_or_the_tarball(tmp_path):
    assert record.record_path(tmp_path) == tmp_path / "arm64.json"
    assert record.record_path(tmp_path / "manifest.json") == tmp_path / "arm64.json"
    assert record.record_path(tmp_path / "digits-1.0.0.tar.gz") == tmp_path / "digits-1.0.0.arm64.json"


def test_a_release_packs_report_md_as_the_build_wrote_it_without_the_arm64_section(tiny_build, tmp_path):
    build = tmp_path / "tiny"
    shutil.copytree(tiny_build.root, build)
    before = make_release(build, tmp_path / "before").read_bytes()
    report = (build / "report.md").read_text()
    found = {"images": 6, "limit": None, "host": "x86 host", "passed": True, "problems": [],
             "emulator": {"version": "qemu-aarch64 version 11.1.3"}, "runs": []}
    assert record.write(build, found) == build / "arm64.json"
    assert (build / "report.md").read_text().startswith(report) and "## Verified on ARM" in (build / "report.md").read_text()
    record.write(build, found)  # a second verification replaces the section, never stacks it
    assert (build / "report.md").read_text().count("## Verified on ARM") == 1
    assert make_release(build, tmp_path / "after").read_bytes() == before


def _verify_arm64(target: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "vitq.cli", "verify", "--arch", "arm64", str(target), "--cpu", "max"],
                          capture_output=True, text=True, env={**os.environ, **env}, timeout=120)


@pytest.mark.parametrize(("env", "line"), [
    ({"VITQ_QEMU": "/nowhere/qemu-aarch64"},
     "vitq: VITQ_QEMU=/nowhere/qemu-aarch64: no such file; name a qemu-aarch64 binary or unset it"),
    ({"PATH": "/nowhere"},  # no apt-get, no dpkg-deb
     "vitq: arm64 runtime: apt-get and dpkg-deb not found; vitq takes qemu-user and Python 3.11 for arm64 from "
     "Debian's archive with them: run on a Debian or Ubuntu host (or container)"),
])
def test_a_runtime_that_cannot_be_prepared_is_one_line_saying_what_to_do(tiny_build, tmp_path, env, line):
    proc = _verify_arm64(tiny_build.root, {"VITQ_RUNTIME_CACHE": str(tmp_path / "cache"), **env})
    *progress, last = proc.stderr.splitlines()
    assert proc.returncode == 2 and proc.stdout == "" and last == line
    assert all(p.startswith("arm64  preparing ") for p in progress)  # what it was doing, then the one error line


def test_too_little_disk_for_the_runtime_is_one_line_naming_the_folder_and_the_setting(tmp_path, monkeypatch):
    from vitq.ship.arm64 import runtime_env

    monkeypatch.setenv("VITQ_RUNTIME_CACHE", str(tmp_path))
    monkeypatch.setattr(runtime_env, "NEEDED_GB", 10**9)
    with pytest.raises(VitqError, match=rf"^{tmp_path}: [0-9.]+ GB free, the arm64 runtime needs about 1000000000 GB; "
                                        "free some space or set VITQ_RUNTIME_CACHE to a folder on a larger disk$"):
        runtime_env.prepare("aarch64", targets.pinned(), print)
