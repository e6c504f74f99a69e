"""A build killed (SIGKILL) or interrupted (Ctrl-C) mid-stage leaves nothing that looks finished and resumes;
two builds never interleave."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from vitq.orchestration.actions import INTERRUPTED

from conftest import REPO, quick_digits, run_doit, tasks_ran

pytestmark = pytest.mark.e2e
TIMEOUT = 300


def start_build(recipes, root, task="build:quick"):
    env = {**os.environ, "VITQ_ARTIFACTS": str(root), "VITQ_RECIPES": str(recipes), "PYTHONUNBUFFERED": "1"}
    # Ctrl-C must reach doit even when this test runs in a background job (where SIGINT is inherited as ignored).
    return subprocess.Popen([sys.executable, "-m", "doit", "-f", str(REPO / "dodo.py"), task], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def signal_when_started(proc, task, delay, sig=signal.SIGKILL, step="") -> subprocess.CompletedProcess:
    """Read doit's output until `task` starts (or, with `step`, until the stage reports starting that step), give
    it `delay` seconds into its work, then signal doit. The delays are a fraction of the work still ahead (a fresh
    stage process's imports, an ONNX export): a faster machine must not finish the stage before the signal."""
    stage, recipe = task.split(":")
    marker = f"{recipe}:{stage}  {step}" if step else f".  {task}"  # a stage's progress line, or doit's task line
    deadline = time.monotonic() + TIMEOUT
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith(marker):
            time.sleep(delay)
            proc.send_signal(sig)
            rest, _ = proc.communicate(timeout=TIMEOUT)
            return subprocess.CompletedProcess(proc.args, proc.returncode, "".join(seen) + rest, "")
        assert time.monotonic() < deadline
    raise AssertionError(f"{task} never started:\n{''.join(seen)}")


def test_killed_and_interrupted_builds_leave_no_truncated_target_and_resume(tmp_path):
    recipes, root = tmp_path / "recipes", tmp_path / "artifacts"
    quick_digits(recipes, holdout=0.05)
    out = root / "quick"

    signal_when_started(start_build(recipes, root), "fp32:quick", delay=0.5)  # seconds of imports still ahead
    time.sleep(1.0)  # the stage process dies with doit (PR_SET_PDEATHSIG)
    assert not (out / "fp32.safetensors").exists()

    signal_when_started(start_build(recipes, root), "onnx_fp32:quick", delay=0.2, step="step 1/")  # mid-export
    time.sleep(1.0)
    assert (out / "fp32.safetensors").is_file() and (out / "samples" / "labels.csv").is_file()
    assert not (out / "fp32.onnx").exists()
    assert not (out / "manifest.json").exists()

    # Ctrl-C: one line, a failing exit, no traceback. The SIGKILLed run's finished stages were remembered
    # (vitq.orchestration.reporter commits doit's state after each task), so only the killed stage and the rest run.
    interrupted = signal_when_started(start_build(recipes, root), "eval:quick", delay=0.5, sig=signal.SIGINT)
    assert interrupted.returncode != 0
    assert INTERRUPTED in interrupted.stdout and "Traceback" not in interrupted.stdout, interrupted.stdout
    assert tasks_ran(interrupted) == {"onnx_fp32:quick", "onnx_int8:quick", "eval:quick"}
    assert not (out / "eval.json").exists()

    final = run_doit("build:quick", recipes=recipes, artifacts=root)
    assert tasks_ran(final) == {"eval:quick", "manifest:quick"}
    assert not list(out.glob(".tmp-*"))
    verify = subprocess.run([sys.executable, "-m", "vitq.cli", "verify", str(out / "manifest.json")],
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_two_builds_on_one_output_folder_do_not_interleave(tmp_path):
    recipes, root = tmp_path / "recipes", tmp_path / "artifacts"
    quick_digits(recipes, holdout=0.05)
    first = start_build(recipes, root)
    for line in first.stdout:  # wait until the first build holds the lock (its first stage has started)
        if line.startswith(".  "):
            break
    second = start_build(recipes, root)
    second_out, _ = second.communicate(timeout=TIMEOUT)
    first.communicate(timeout=TIMEOUT)
    assert first.returncode == 0
    assert second.returncode != 0
    assert "another vitq build is writing this output folder" in second_out
    assert "Traceback" not in second_out
    run_doit("build:quick", recipes=recipes, artifacts=root)  # and afterwards building works again


def test_recipes_build_in_parallel_and_side_by_side_with_the_bytes_of_one_at_a_time(tmp_path):
    """Two doit invocations on two recipes of one root at once, then `doit -n 2` on both in another root:
    every build succeeds, doit's state stays sound (a rerun does nothing), and the bytes are the same."""
    import sqlite3

    from conftest import tasks_skipped, write_recipe
    from helpers_models import TINY_TIMM, make_images

    recipes = tmp_path / "recipes"
    make_images(recipes / "images")
    for name, seed in (("one", 7), ("two", 8)):
        text = TINY_TIMM.format(extra="executorch: {enabled: false}\n").replace("seed: 7", f"seed: {seed}")
        write_recipe(recipes, name, text)
    side = tmp_path / "side-by-side"
    builds = [start_build(recipes, side, f"build:{name}") for name in ("one", "two")]
    outputs = [b.communicate(timeout=TIMEOUT)[0] for b in builds]
    assert [b.returncode for b in builds] == [0, 0], outputs
    rerun = run_doit("build:one", "build:two", recipes=recipes, artifacts=side)
    assert tasks_ran(rerun) == set() and {"manifest:one", "manifest:two"} <= tasks_skipped(rerun)
    assert sqlite3.connect(side / ".doit.db").execute("pragma integrity_check").fetchone() == ("ok",)

    parallel = tmp_path / "parallel"
    run_doit("-n", "2", "build:one", "build:two", recipes=recipes, artifacts=parallel)
    for name in ("one", "two"):
        assert tree(parallel / name) == tree(side / name), name


def tree(folder):
    from vitq.fileio import sha256_file

    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "build-log.jsonl"}
