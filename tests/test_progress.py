"""Progress on long work: plain prefixed lines off a terminal (rate-limited), a tqdm bar on one, nothing when off;
training, evaluation and stage steps report through it without changing a byte, and a stage's one-line error is
still what the build shows."""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import sys

import numpy as np
import pytest
from tqdm import tqdm

from vitq import progress
from vitq.progress import Progress

from conftest import quick_digits
from helpers_models import tiny_recipe


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _no_mode_from_the_environment(monkeypatch):
    monkeypatch.delenv(progress.MODE_VAR, raising=False)
    monkeypatch.delenv(progress.FD_VAR, raising=False)


# ----------------------------------------------------------------------------------------------- the mechanism
def test_off_a_terminal_lines_are_prefixed_and_at_most_one_per_interval_plus_the_final_one():
    out, clock = io.StringIO(), Clock()
    with progress.stage("digits:fp32"):
        bar = Progress(100, "epoch", stream=out, clock=clock, interval=5.0)
    assert bar.mode == "lines"
    with bar:
        for i in range(100):
            clock.now += 0.5
            bar.set_postfix_str(f"loss {1 / (i + 1):.3f}")
            bar.update(1)
    lines = out.getvalue().splitlines()
    assert all(line.startswith("digits:fp32  epoch ") for line in lines), lines
    seconds = [float(re.search(r"\[(\d+\.\d)s\]$", line).group(1)) for line in lines]
    assert len(lines) == 10 and all(b - a >= 5.0 for a, b in zip(seconds, seconds[1:], strict=False)), lines
    assert lines[0] == "digits:fp32  epoch 10/100 loss 0.100  [5.0s]"
    assert lines[-1] == "digits:fp32  epoch 100/100 loss 0.010 done  [50.0s]"


def test_work_done_only_to_be_shown_is_asked_for_only_when_a_line_will_show_it():
    clock = Clock()
    lines = Progress(3, "epoch", stream=io.StringIO(), clock=clock, interval=5.0, mode="lines")
    assert not lines.shows_next()  # the first line is due 5 s in
    clock.now += 5.0
    assert lines.shows_next()
    lines.update(1)
    assert not lines.shows_next()
    lines.update(1)
    assert lines.shows_next()  # the last update: the final line shows it
    assert Progress(3, stream=io.StringIO(), mode="bar").shows_next()
    assert not Progress(3, stream=io.StringIO(), mode="off").shows_next()


def test_on_a_terminal_it_is_a_tqdm_bar_with_the_prefix():
    out = Terminal()
    with progress.stage("digits:eval"), Progress(6, unit="images", stream=out) as bar:
        assert bar.mode == "bar" and isinstance(bar._bar, tqdm)
        for _ in range(6):
            bar.update(1)
    text = out.getvalue()
    assert "\r" in text and "digits:eval" in text and "6/6" in text


def test_the_environment_picks_the_mode_and_off_shows_only_messages(monkeypatch):
    monkeypatch.setenv(progress.MODE_VAR, "lines")
    assert Progress(1, stream=Terminal()).mode == "lines"
    monkeypatch.setenv(progress.MODE_VAR, "off")
    out = io.StringIO()
    with Progress(3, "epoch", stream=out, interval=0) as bar:
        bar.update(3)
        bar.write("int8: FAILED: boom")
    assert not bar.enabled and out.getvalue() == "int8: FAILED: boom\n"


def test_steps_are_one_line_each_and_an_error_leaves_no_final_line():
    out, clock = io.StringIO(), Clock()
    with progress.stage("digits:pte"), Progress(4, unit="step", stream=out, clock=clock, mode="lines") as bar:
        for name in ("export", "quantize", "lower", "serialize"):
            bar.step(name)
            clock.now += 1
    assert out.getvalue().splitlines() == [
        "digits:pte  step 1/4: export  [0.0s]", "digits:pte  step 2/4: quantize  [1.0s]",
        "digits:pte  step 3/4: lower  [2.0s]", "digits:pte  step 4/4: serialize  [3.0s]",
        "digits:pte  4/4 steps done  [4.0s]"]
    out = io.StringIO()
    with pytest.raises(ValueError), Progress(3, unit="step", stream=out, mode="lines") as bar:
        bar.step("export")
        raise ValueError
    assert out.getvalue().count("\n") == 1 and "done" not in out.getvalue()


def test_the_stage_prefix_is_set_for_the_stage_and_restored_after():
    assert progress.current_prefix() is None
    with progress.stage("a:fp32"):
        with progress.stage("b:eval"):
            assert Progress(1, mode="off").prefix == "b:eval"
        assert progress.current_prefix() == "a:fp32"
    assert progress.current_prefix() is None
    assert Progress(1, mode="off", fallback_prefix="verify:a").prefix == "verify:a"


# ----------------------------------------------------------------------------------------------- the work
TINY_TRAINING = "threads: 1\nmodel: {kwargs: {patch_size: 8, embed_dim: 16, depth: 1, num_heads: 2}}\n"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny digits training (2 epochs) run as the fp32 stage with progress off, as lines and as a bar:
    mode -> (sha256 of fp32.safetensors, what went to stderr)."""
    from vitq.layout import ArtifactPaths
    from vitq.orchestration.runner import run_stage
    from vitq.recipe import load_recipe

    folder = tmp_path_factory.mktemp("progress-training")
    recipe = load_recipe(quick_digits(folder / "recipes", extra=TINY_TRAINING, holdout=0.5))
    results = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(progress, "INTERVAL", 0.0)
        for mode in ("off", "lines", "bar"):
            patch.setenv(progress.MODE_VAR, mode)
            paths = ArtifactPaths.for_recipe(folder / mode, recipe.name)
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                run_stage("fp32", recipe, paths)
            results[mode] = hashlib.sha256(paths.file("fp32").read_bytes()).hexdigest(), err.getvalue()
    return results


def test_training_reports_each_epoch_with_loss_and_held_out_accuracy(trained):
    lines = trained["lines"][1].splitlines()
    pattern = r"quick:fp32  epoch {}/2 loss \d+\.\d{{3}} held-out \d+\.\d%"
    assert len(lines) == 2, lines
    assert re.match(pattern.format(1), lines[0]) and re.match(pattern.format(2) + " done", lines[1]), lines
    assert "quick:fp32 epoch" in trained["bar"][1] and "2/2" in trained["bar"][1]
    assert trained["off"][1] == ""


def test_progress_does_not_change_the_trained_weights(trained):
    digests = {mode: digest for mode, (digest, _) in trained.items()}
    assert len(set(digests.values())) == 1, digests


def test_evaluation_reports_variants_times_images(tmp_path, monkeypatch):
    from vitq.check.evaluate import evaluate
    from vitq.model import runtimes
    from vitq.variants import variants_for

    recipe = tiny_recipe(tmp_path)
    variants = [v.id for v in variants_for(recipe)]
    monkeypatch.setattr(runtimes, "load", lambda *a, **k: lambda batch: np.tile(np.arange(5.0), (len(batch), 1)))
    monkeypatch.setattr(progress, "INTERVAL", 0.0)
    monkeypatch.setenv(progress.MODE_VAR, "lines")
    err = io.StringIO()
    with contextlib.redirect_stderr(err), progress.stage("verify:tiny"):  # as vitq verify re-runs it
        files = {v.id: tmp_path / v.file for v in variants_for(recipe) if v.file}  # never opened: load is faked
        result = evaluate(recipe, files, tmp_path / "images" / "labels.csv")
    total = len(variants) * result["n"]
    lines = err.getvalue().splitlines()
    assert len(lines) == total and all(line.startswith("verify:tiny  ") for line in lines)
    assert lines[0].startswith(f"verify:tiny  1/{total} images variant 1/{len(variants)}: {variants[0]}")
    assert lines[-1].startswith(f"verify:tiny  {total}/{total} images variant {len(variants)}/{len(variants)}: "
                                f"{variants[-1]} done")
    for i, variant in enumerate(variants, 1):
        assert any(f"variant {i}/{len(variants)}: {variant}" in line for line in lines)


# ----------------------------------------------------------------------------------------------- the build's errors
FAKE_STAGE = """\
import sys
from vitq import progress
from vitq.errors import VitqError, run_command

progress.INTERVAL = 0.0

def stage():
    with progress.stage("tiny:eval"), progress.Progress(3, unit="images") as bar:
        for _ in range(3):
            bar.update(1)
    print("a library warning", file=sys.stderr)
    with progress.stage("tiny:eval"), progress.Progress(2, unit="images") as bar:
        bar.update(1)
        raise VitqError("tiny.yaml: model.name: unknown timm model 'x'")

sys.exit(run_command(stage))
"""
ERROR = "tiny.yaml: model.name: unknown timm model 'x'"


@pytest.fixture
def fake_stage(tmp_path, monkeypatch):
    """vitq.orchestration.actions.run_stage runs this torch-free stand-in for `python -m vitq.orchestration.runner` (a fresh interpreter per
    stage): progress lines, a warning, then a user error (exit 2)."""
    tiny_recipe(tmp_path)  # a real recipe: the doit side reads it once before the stage runs
    script = tmp_path / "stage.py"
    script.write_text(FAKE_STAGE)
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}"\n')
    python.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(python))
    monkeypatch.setenv(progress.MODE_VAR, "lines")
    monkeypatch.setenv("VITQ_STAGE_PROCESS", "fresh")
    return tmp_path


def test_a_stage_error_is_the_one_line_shown_and_progress_went_live_to_doits_stderr(fake_stage, monkeypatch):
    from vitq.orchestration.actions import run_stage

    doit_stderr = (fake_stage / "doit-stderr.txt").open("w+", encoding="utf-8")
    monkeypatch.setattr(sys, "stderr", doit_stderr)
    failed = run_stage("eval", str(fake_stage / "tiny.yaml"), str(fake_stage / "artifacts"))
    doit_stderr.seek(0)
    shown = doit_stderr.read().splitlines()
    assert failed.message == ERROR
    assert [re.sub(r"  \[.*", "", line) for line in shown] == [
        "tiny:eval  1/3 images", "tiny:eval  2/3 images", "tiny:eval  3/3 images done", "tiny:eval  1/2 images"]


def test_without_a_file_for_doits_stderr_progress_goes_to_the_pipe_and_the_error_is_still_found(fake_stage,
                                                                                               monkeypatch):
    from vitq.orchestration.actions import run_stage
    from vitq.orchestration.stage_process import user_error

    monkeypatch.setattr(sys, "stderr", io.StringIO())  # no fileno: doit capturing output
    failed = run_stage("eval", str(fake_stage / "tiny.yaml"), str(fake_stage / "artifacts"))
    assert failed.message == ERROR
    lines = ["tiny:eval  1/3 images  [0.0s]", "tiny:eval  3/3 images done  [0.1s]", "a library warning", ERROR]
    assert user_error(lines) == ERROR
    assert user_error([*lines[:2], "x.yaml: 2 problems", "x.yaml: a: bad", "x.yaml: b: bad"]) == \
        "x.yaml: 2 problems\nx.yaml: a: bad\nx.yaml: b: bad"

