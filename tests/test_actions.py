"""vitq.orchestration.actions: what doit runs for a stage or a bench. Each failure is a TaskFailed of one line, and a
recipe another build holds is refused before anything runs."""

from __future__ import annotations

import subprocess
import sys

from doit.exceptions import TaskFailed

from vitq.orchestration import actions, locks

from conftest import write_recipe

HOLD = ("import sys, time; from pathlib import Path; from vitq.orchestration.locks import hold_build_lock; "
        "hold_build_lock(Path(sys.argv[1]), sys.argv[2]); print('held', flush=True); time.sleep(60)")


def test_a_broken_recipe_fails_the_stage_in_one_line_naming_file_and_field(tmp_path, monkeypatch):
    monkeypatch.setattr(locks, "_held_locks", {})
    recipe = write_recipe(tmp_path, "bad", "model: {source: timm, name: deit_tiny_patch16_224}\nquantize: {dtype: int3}\n")
    failed = actions.run_stage("fp32", str(recipe), str(tmp_path / "out"))
    assert isinstance(failed, TaskFailed)
    assert "bad.yaml" in failed.message and "quantize.dtype" in failed.message
    assert not any((tmp_path / "out" / "bad").glob("*.safetensors"))


def test_a_stage_and_a_bench_of_a_recipe_another_build_holds_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(locks, "_held_locks", {})
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path), "quick"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        recipe = str(tmp_path / "quick.yaml")
        for failed in (actions.run_stage("fp32", recipe, str(tmp_path)), actions.run_bench(recipe, str(tmp_path), 1, 0)):
            assert isinstance(failed, TaskFailed) and "another vitq build is writing" in failed.message
    finally:
        holder.kill()
        holder.wait()
