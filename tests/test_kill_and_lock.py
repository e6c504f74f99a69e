"""A build killed with SIGKILL mid-stage leaves nothing that looks finished; two builds never interleave."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from conftest import REPO, quick_digits, run_doit, tasks_ran

TIMEOUT = 300


def start_build(recipes, root, task="build:quick"):
    env = {**os.environ, "VITQ_ARTIFACTS": str(root), "VITQ_RECIPES": str(recipes), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "doit", "-f", str(REPO / "dodo.py"), task], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def kill_when_started(proc, task, delay):
    """Read doit's output until `task` starts, give it `delay` seconds into its work, then SIGKILL doit."""
    deadline = time.monotonic() + TIMEOUT
    for line in proc.stdout:
        if line.startswith(f".  {task}"):
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return
        assert time.monotonic() < deadline
    raise AssertionError(f"{task} never started")


def test_killed_builds_leave_no_truncated_target_and_the_next_build_finishes(tmp_path):
    recipes, root = tmp_path / "recipes", tmp_path / "artifacts"
    quick_digits(recipes, extra="")
    out = root / "quick"

    kill_when_started(start_build(recipes, root), "fp32:quick", delay=4.0)
    time.sleep(1.0)  # the stage process dies with doit (PR_SET_PDEATHSIG)
    assert not (out / "fp32.safetensors").exists()

    kill_when_started(start_build(recipes, root), "onnx_fp32:quick", delay=2.5)
    time.sleep(1.0)
    assert (out / "fp32.safetensors").is_file() and (out / "samples" / "labels.csv").is_file()
    assert not (out / "fp32.onnx").exists()
    assert not (out / "manifest.json").exists()

    # doit writes its state when it exits, so a SIGKILLed run's finished tasks are redone: slower, never stale.
    final = run_doit("build:quick", recipes=recipes, artifacts=root)
    assert {"onnx_fp32:quick", "eval:quick", "manifest:quick"} <= tasks_ran(final)
    assert not list(out.glob(".tmp-*"))
    verify = subprocess.run([sys.executable, "-m", "vitq.cli", "verify", str(out / "manifest.json")],
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_two_builds_on_one_output_folder_do_not_interleave(tmp_path):
    recipes, root = tmp_path / "recipes", tmp_path / "artifacts"
    quick_digits(recipes)
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
