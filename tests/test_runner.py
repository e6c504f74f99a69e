"""vitq.orchestration.runner called directly: a stage run in this process writes its outputs and one build-log record (seconds,
peak memory, start-up when asked), prints the line doit shows, and the command's user errors are exit 2 and one
line. ``main`` never re-executes the test process here: ``os.execve`` is refused."""

from __future__ import annotations

import json
import os
import re
import time

import pytest

from vitq.errors import USER_ERROR
from vitq.layout import ArtifactPaths
from vitq.model.samples import read_labels
from vitq.orchestration.pipeline import stage_named
from vitq.orchestration.runner import main, run_and_report, run_stage
from vitq.recipe import load_recipe

LOG_KEYS = {"recipe", "stage", "seconds", "peak_rss_mb", "finished"}


@pytest.fixture
def tiny(tiny_build, tmp_path):
    """The shared tiny recipe (read only: its sample images are the samples stage's input) and a fresh output root."""
    recipe = load_recipe(tiny_build.root.parent.parent / "tiny.yaml")
    return recipe, ArtifactPaths.for_recipe(tmp_path / "artifacts", recipe.name)


@pytest.fixture
def no_exec(monkeypatch):
    """main re-executes itself to put the hash seed in place: here that would replace pytest. Refuse it, and
    give it the environment a stage process has, so it runs in this process instead."""
    def refuse(*args):
        raise AssertionError(f"os.execve{args[:2]}")

    monkeypatch.setattr(os, "execve", refuse)
    monkeypatch.setenv("PYTHONHASHSEED", "0")
    monkeypatch.setenv("TORCH_CPP_LOG_LEVEL", "ERROR")  # main sets it: restored after the test


def log_records(paths):
    return [json.loads(line) for line in paths.build_log.read_text().splitlines()]


def test_a_stage_writes_its_outputs_and_one_log_record_with_its_time_and_peak_memory(tiny):
    recipe, paths = tiny
    summary, seconds, peak_mb = run_stage("samples", recipe, paths)
    outputs = stage_named("samples").outputs(recipe, paths)
    assert all(p.is_file() for p in outputs.values())
    rows = read_labels(paths.samples_labels)
    assert len(rows) == 6 and all((paths.samples_dir / name).is_file() for name, _ in rows)
    assert summary == "6 images from " + recipe.samples.dir + " -> samples/"
    [record] = log_records(paths)
    assert set(record) == LOG_KEYS
    assert (record["recipe"], record["stage"]) == ("tiny", "samples")
    assert record["seconds"] == round(seconds, 3) and 0 < seconds < 60
    assert record["peak_rss_mb"] == round(peak_mb, 1) and peak_mb > 50  # this process, torch loaded
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", record["finished"])
    assert not list(paths.root.glob(".tmp-*"))


def test_each_run_appends_a_record_and_says_what_starting_it_cost_when_asked(tiny):
    recipe, paths = tiny
    run_stage("samples", recipe, paths)
    run_stage("samples", recipe, paths, requested=time.time() - 5.0)
    first, second = log_records(paths)
    assert "startup_seconds" not in first
    assert set(second) == LOG_KEYS | {"startup_seconds"} and 5.0 <= second["startup_seconds"] < 60
    assert run_stage("samples", recipe, paths, requested=time.time() + 60)[0]  # a clock step back: no negative cost
    assert log_records(paths)[-1]["startup_seconds"] == 0.0


def test_an_unknown_stage_is_refused_before_anything_is_written(tiny):
    recipe, paths = tiny
    with pytest.raises(KeyError):
        run_stage("quantise", recipe, paths)
    assert not paths.root.exists()


def test_run_and_report_prints_the_line_doit_shows(tiny, capsys):
    recipe, paths = tiny
    assert run_and_report("samples", str(recipe.path), str(paths.root.parent)) == 0
    out = capsys.readouterr().out
    assert re.fullmatch(r"  tiny:samples    6 images from \S+ -> samples/  \[\d+\.\ds, peak \d+ MB\]\n", out), out


@pytest.mark.parametrize("argv", [[], ["samples"], ["samples", "tiny.yaml"], ["a", "b", "c", "d"]])
def test_main_with_the_wrong_number_of_arguments_prints_usage_and_exits_2(argv, no_exec, capsys):
    assert main(argv) == USER_ERROR == 2
    out, err = capsys.readouterr()
    assert out == "" and err == "usage: python -m vitq.orchestration.runner STAGE RECIPE_FILE ARTIFACTS_ROOT\n"


def test_main_with_an_unknown_stage_is_one_line_and_exit_2(no_exec, capsys, tmp_path):
    assert main(["quantise", "tiny.yaml", str(tmp_path / "artifacts")]) == USER_ERROR
    assert capsys.readouterr().err == "vitq.orchestration.runner: unknown stage 'quantise'\n"
    assert not (tmp_path / "artifacts").exists()


def test_main_runs_a_stage_in_a_process_that_has_the_hash_seed(tiny, no_exec, capsys):
    recipe, paths = tiny
    assert main(["samples", str(recipe.path), str(paths.root.parent)]) == 0
    assert capsys.readouterr().out.startswith("  tiny:samples    6 images from ")
    [record] = log_records(paths)
    assert record["startup_seconds"] >= 0  # from this interpreter's start


def test_main_with_a_missing_recipe_is_one_line_and_exit_2(no_exec, capsys, tmp_path):
    assert main(["samples", str(tmp_path / "gone.yaml"), str(tmp_path / "artifacts")]) == USER_ERROR
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and "gone.yaml" in err and "Traceback" not in err
    assert not (tmp_path / "artifacts").exists()
