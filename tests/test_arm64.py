"""The arm tier (make test-arm): real files in the real aarch64 runtimes under an emulated ARM CPU. The runtime is
prepared once under the user's cache folder (a few GB, minutes the first time) and reused.

Each run of the emulator imports torch and ExecuTorch (about 35 s): the tests ask for a few CPU models and images."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vitq.fileio import sha256_file
from vitq.ship.release import make_release

from conftest import quick_digits, run_doit

pytestmark = pytest.mark.arm


def verify_arm64(target: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vitq.cli", "verify", "--arch", "arm64", str(target), *args],
                          capture_output=True, text=True, timeout=1800, env={**os.environ, **(env or {})})


def test_the_tiny_build_passes_on_two_kernel_families_with_a_record_and_a_report_section(tiny_build, tmp_path):
    build = tmp_path / "tiny"
    shutil.copytree(tiny_build.root, build)
    proc = verify_arm64(build, "--cpu", "cortex-a53,max", "--limit", "4")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith(f"-> {build / 'arm64.json'}")
    found = json.loads((build / "arm64.json").read_text())
    assert found["passed"] and found["images"] == 4 and found["emulator"]["version"].startswith("qemu-aarch64 version")
    runs = {(r["arch"], r["cpu"] if r["arch"] == "aarch64" else "host"): r for r in found["runs"]}
    assert set(runs) == {("x86_64", "host"), ("aarch64", "cortex-a53"), ("aarch64", "max")}
    assert "asimddp" not in runs["aarch64", "cortex-a53"]["capabilities"]
    assert "sme2" in runs["aarch64", "max"]["capabilities"]  # the SME2 kernel family is the one taken
    for run in found["runs"]:
        assert run["known_answer"] == {"max_abs_error": 0.0, "passed": True}
        assert set(run["files"]) == {"int8.pte", "int8.ptl", "int8.onnx"}
    for cpu in ("cortex-a53", "max"):
        for figures in runs["aarch64", cpu]["files"].values():
            assert figures["agreement_x86"] == 1.0 and figures["passed"] and figures["images"] == 4
    report = (build / "report.md").read_text()
    assert "## Verified on ARM (emulated)" in report and "| int8.pte | pinned | aarch64 max | SME2 |" in report


def _arch_dependent(onnx_file: Path, wins: int) -> None:
    """Rewrite an ONNX classifier so that on arm64 class ``wins`` takes every image and on x86-64 nothing changes:
    it adds relu(float(int32(1e20))) to that logit, and a float -> int32 cast out of range is the CPU's own business
    (x86's cvttss2si gives INT_MIN, ARM's fcvtzs saturates to INT_MAX). Every x86 check of the file still holds."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(onnx_file)
    graph = model.graph
    image, logits = graph.input[0].name, graph.output[0].name
    classes = graph.output[0].type.tensor_type.shape.dim[-1].dim_value
    producer = next(node for node in graph.node if logits in node.output)
    producer.output[list(producer.output).index(logits)] = "plain"
    onehot = np.zeros(classes, np.float32)
    onehot[wins] = 1.0
    graph.initializer.extend([numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
                              numpy_helper.from_array(np.array(1e20, np.float32), "huge"),
                              numpy_helper.from_array(onehot, "onehot")])
    graph.node.extend([
        helper.make_node("ReduceMax", [image], ["peak"], keepdims=0),  # depends on the input: never folded away
        helper.make_node("Mul", ["peak", "zero"], ["nothing"]),
        helper.make_node("Add", ["nothing", "huge"], ["out_of_range"]),
        helper.make_node("Cast", ["out_of_range"], ["as_int"], to=TensorProto.INT32),
        helper.make_node("Cast", ["as_int"], ["as_float"], to=TensorProto.FLOAT),
        helper.make_node("Relu", ["as_float"], ["arm_only"]),
        helper.make_node("Mul", ["arm_only", "onehot"], ["push"]),
        helper.make_node("Add", ["plain", "push"], [logits]),
    ])
    onnx.save(model, onnx_file)


def test_a_file_that_computes_something_else_on_arm_than_on_x86_fails_the_check(tiny_build, tmp_path):
    build = tmp_path / "tiny"
    shutil.copytree(tiny_build.root, build)
    _arch_dependent(build / "int8.onnx", wins=0)
    manifest = json.loads((build / "manifest.json").read_text())
    entry = next(a for a in manifest["artifacts"] if a["path"] == "int8.onnx")
    entry["sha256"], entry["bytes"] = sha256_file(build / "int8.onnx"), (build / "int8.onnx").stat().st_size
    (build / "manifest.json").write_text(json.dumps(manifest))

    proc = verify_arm64(build, "--cpu", "cortex-a53", "--limit", "4")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    problems = proc.stdout.splitlines()[:-1]
    assert problems and all(line.startswith(f"{build}/int8.onnx: on arm64 cortex-a53 (pinned): ") for line in problems)
    assert any("max |dlogit| vs x86 2.14748e+09, needs <= " in line for line in problems), problems
    found = json.loads((build / "arm64.json").read_text())
    x86 = next(r for r in found["runs"] if r["arch"] == "x86_64")
    assert x86["files"]["int8.onnx"]["passed"]  # on x86 the file is fine: only the ARM run tells
    assert "| int8.onnx | pinned | aarch64 cortex-a53 | NEON only (ARMv8.0) |" in (build / "report.md").read_text()


def test_a_defective_emulator_fails_its_known_answer_check_before_any_file_is_judged(tiny_build, tmp_path):
    """qemu 7.2 (Debian bookworm) emulates SME wrongly: with -cpu max the digits int8 program scored at chance."""
    from vitq.ship.arm64 import runtime_env

    folder = runtime_env._piece(runtime_env.cache_root() / "qemu-7.2-bookworm", print, "qemu 7.2 (a defective one)",
                                lambda into: runtime_env._unpack_debs(into, ["qemu-user-static:amd64/bookworm"], print))
    qemu = folder / "usr/bin/qemu-aarch64-static"
    tarball = make_release(tiny_build.root, tmp_path)  # a release as downloaded: its record goes beside it
    proc = verify_arm64(tarball, "--cpu", "max", "--limit", "1", env={"VITQ_QEMU": str(qemu)})
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert "arm64 max (pinned): the emulated CPU does not present the SME2 family (missing sme2, " in lines[0]
    assert lines[1].startswith("arm64 max (pinned): the known-answer check failed (max error ")
    assert "this emulator computes wrong on this CPU model" in lines[1] and len(lines) == 3
    found = json.loads(tarball.with_name(tarball.name.replace(".tar.gz", ".arm64.json")).read_text())
    run = next(r for r in found["runs"] if r["arch"] == "aarch64")
    assert found["emulator"]["version"].startswith("qemu-aarch64 version 7.2") and run["files"] == {}
    assert run["known_answer"]["passed"] is False and not found["passed"]


def test_the_digits_files_pass_on_arm_in_the_pinned_runtimes_and_in_executorch_1_5_1(tmp_path):
    recipes, root = tmp_path / "recipes", tmp_path / "artifacts"
    quick_digits(recipes, pte=True)
    run_doit("build:quick", recipes=recipes, artifacts=root)
    # doit reads a bare NAME=VALUE argument as a variable of its own: the runtime goes in --runtime=...
    proc = run_doit("verify_arm64:quick", "--cpu", "cortex-a76,neoverse-v1", "--limit", "24",
                    "--runtime=executorch==1.5.1", recipes=recipes, artifacts=root)
    assert "arm64 OK (24 images on cortex-a76, neoverse-v1; runtimes executorch==1.5.1, pinned)" in proc.stdout
    found = json.loads((root / "quick" / "arm64.json").read_text())
    shipped = next(a["path"] for a in json.loads((root / "quick" / "manifest.json").read_text())["artifacts"]
                   if a["format"] == "executorch")
    where = {(r["runtime"], r["arch"], r["cpu"] if r["arch"] == "aarch64" else "host"): r for r in found["runs"]}
    assert set(where) == {("pinned", "x86_64", "host"), ("pinned", "aarch64", "cortex-a76"),
                          ("pinned", "aarch64", "neoverse-v1"), ("executorch==1.5.1", "x86_64", "host"),
                          ("executorch==1.5.1", "aarch64", "cortex-a76"), ("executorch==1.5.1", "aarch64", "neoverse-v1")}
    for (runtime, _, _), run in where.items():
        expected = {shipped} if runtime != "pinned" else {shipped, "int8.ptl", "int8.onnx"}
        assert set(run["files"]) == expected and all(f["passed"] for f in run["files"].values())
    assert where["executorch==1.5.1", "x86_64", "host"]["versions"]["executorch"] == "1.5.1"
    report = (root / "quick" / "report.md").read_text()
    assert f"| {shipped} | executorch==1.5.1 | aarch64 neoverse-v1 | i8mm + SVE |" in report
