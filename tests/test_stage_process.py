"""Stage processes forked from the warm stage server: the same bytes as a fresh interpreter per stage, their
cost logged, a user error back as its one line."""

from __future__ import annotations

import json

import pytest

from vitq.fileio import sha256_file
from vitq.orchestration import stage_process
from vitq.orchestration.pipeline import stages_for
from vitq.recipe import load_recipe

from helpers_models import tiny_recipe

pytestmark = pytest.mark.e2e  # starts the stage server (imports torch once) and fresh interpreters


def built_files(folder):
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "build-log.jsonl"}


def test_forked_and_fresh_stage_processes_write_the_same_bytes(tmp_path, monkeypatch):
    recipe = tiny_recipe(tmp_path, extra="executorch: {enabled: false}\n")
    for mode in ("fresh", "forkserver"):
        monkeypatch.setenv(stage_process.MODE_VAR, mode)
        for stage in stages_for(recipe):
            result = stage_process.run(stage.name, recipe, str(tmp_path / mode), keep_stdout=True)
            assert (result.exitcode, result.error) == (0, None), (mode, stage.name)
            assert result.run.summary and result.run.seconds >= 0 and result.run.peak_mb > 0  # a value, not a line
            assert f"tiny:{stage.name} " not in result.stdout  # doit prints the line, from that value
    assert built_files(tmp_path / "fresh" / "tiny") == built_files(tmp_path / "forkserver" / "tiny")
    for mode in ("fresh", "forkserver"):
        log = [json.loads(line) for line in (tmp_path / mode / "tiny" / "build-log.jsonl").read_text().splitlines()]
        assert [r["stage"] for r in log] == [s.name for s in stages_for(recipe)]
        assert all(r["startup_seconds"] >= 0 and r["peak_rss_mb"] > 0 for r in log)


def test_a_user_error_in_a_forked_stage_comes_back_as_its_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv(stage_process.MODE_VAR, "forkserver")
    tiny_recipe(tmp_path, extra="")
    broken = tmp_path / "tiny.yaml"
    broken.write_text(broken.read_text().replace("weights: {random: {seed: 7}}", "weights: {file: missing.safetensors}"))
    result = stage_process.run("fp32", load_recipe(broken), str(tmp_path / "out"))
    assert result.exitcode == 2
    assert result.error.endswith("tiny.yaml: weights.file: file not found: " + str(tmp_path / "missing.safetensors"))
    assert not (tmp_path / "out" / "tiny" / "fp32.safetensors").exists()


def test_an_unknown_stage_process_mode_is_one_line(monkeypatch):
    monkeypatch.setenv(stage_process.MODE_VAR, "threads")
    with pytest.raises(Exception, match="VITQ_STAGE_PROCESS='threads': expected forkserver or fresh"):
        stage_process.run("fp32", None, "out")  # refused before the recipe is looked at
