"""Build cost: the latest run of each stage from build-log.jsonl, in build order, as a table."""

from __future__ import annotations

import json

import pytest

from vitq.errors import InputError
from vitq.orchestration.costs import format_costs, latest_runs
from vitq.orchestration.pipeline import STAGES

LOG = [
    {"recipe": "r", "stage": "fp32", "seconds": 5.0, "peak_rss_mb": 900.0, "finished": "2026-11-01T10:00:00Z"},
    {"recipe": "r", "stage": "samples", "seconds": 0.5, "peak_rss_mb": 300.0, "finished": "2026-11-01T10:00:01Z"},
    {"recipe": "r", "stage": "int8", "seconds": 2.25, "peak_rss_mb": 1200.4, "finished": "2026-11-01T10:00:02Z"},
    {"recipe": "r", "stage": "fp32", "seconds": 4.0, "startup_seconds": 0.05, "peak_rss_mb": 800.0,
     "finished": "2026-11-01T11:00:00Z"},
    {"recipe": "r", "stage": "samples", "seconds": 0.1, "cache": "hit", "finished": "2026-11-01T11:00:01Z"},
]


def test_format_costs_shows_the_latest_run_of_each_stage_in_build_order_and_a_total(tmp_path):
    log = tmp_path / "build-log.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in LOG))
    text = format_costs(log)
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert rows[0] == "| stage | work s | start-up s | peak RSS MB | finished (UTC) |"
    expected = {
        "samples": "| samples | 0.1 | cache hit |  | 2026-11-01T11:00:01Z |",  # restored from the build cache
        "fp32": "| fp32 | 4.0 | 0.05 | 800 | 2026-11-01T11:00:00Z |",  # the later of its two runs
        "int8": "| int8 | 2.2 |  | 1200 | 2026-11-01T10:00:02Z |",  # logged before start-up was
    }
    order = [s.name for s in STAGES if s.name in expected]  # the pipeline's order, not the log's
    assert rows[1:] == [expected[name] for name in order] + ["| **total** | **6.3** | **0.1** | **1200** (max) | |"]
    assert "skipped" not in text


def test_format_costs_skips_a_line_cut_short_by_a_killed_build(tmp_path):
    log = tmp_path / "build-log.jsonl"
    log.write_text(json.dumps(LOG[0]) + "\n\n" + '{"recipe": "r", "stage": "int8", "seco')
    runs, skipped = latest_runs(log)
    assert [r["stage"] for r in runs] == ["fp32"] and skipped == 1
    assert "1 unreadable line(s) in build-log.jsonl skipped" in format_costs(log)


def test_format_costs_without_a_log_is_one_line_error(tmp_path):
    with pytest.raises(InputError, match=r"build-log.jsonl: build log not found; build the recipe first"):
        format_costs(tmp_path / "build-log.jsonl")
