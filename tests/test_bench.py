"""The benchmark on a tiny real build (random weights), run as a user runs it; and the build-cost table.

No timed assertions: only that every variant was measured and the three outputs are well formed.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
import torch
from PIL import Image

from conftest import REPO
from helpers_models import tiny_recipe
from vitq.bench import ENGINES, markdown
from vitq.costs import format_costs, latest_runs
from vitq.errors import InputError
from vitq.layout import ArtifactPaths
from vitq.pipeline import STAGES
from vitq.runner import configure_torch
from vitq.stages import fp32, int8, lite, onnx_fp32, onnx_int8, optimized, samples

BATCHES = ("1", "8")


def bench(recipe_file, root, *extra):
    return subprocess.run(
        [sys.executable, "-m", "vitq.bench", str(recipe_file), str(root), "--repeats", "3", "--warmup", "1", *extra],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )


@pytest.fixture(scope="module")
def benched(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench")
    recipe = tiny_recipe(folder)
    configure_torch(recipe)
    paths = ArtifactPaths.for_recipe(folder / "out", recipe.name)
    for stage in (samples, fp32, int8, optimized, lite, onnx_fp32, onnx_int8):
        stage.run(recipe, paths)
    proc = bench(recipe.source, folder / "out")
    assert proc.returncode == 0, proc.stderr
    return paths, proc


def expected_variants():
    engines = [e for e in ENGINES if e in torch.backends.quantized.supported_engines]
    return ["fp32_eager", "fp32_torchscript", *[f"int8_eager_{e}" for e in engines], "int8_torchscript",
            "int8_optimized", "int8_lite", "ort_fp32", "ort_int8"]


def test_bench_json_has_every_variant_at_both_batch_sizes(benched):
    paths, proc = benched
    report = json.loads((paths.root / "bench.json").read_text())
    assert report["schema"] == "vitq.bench/1"
    assert report["threads"] == 1 and report["repeats"] == 3 and report["warmup"] == 1
    assert report["batch_sizes"] == [1, 8]
    assert report["host"]["cpu"] and report["host"]["machine"]
    assert report["versions"]["torch"] == torch.__version__.split("+")[0]
    assert report["memory"] and report["mobile"] == "int8_lite"
    assert set(report["host"]["load_average"]) == {"start", "end"} and isinstance(report["host"]["busy"], bool)
    variants = {v["id"]: v for v in report["variants"]}
    assert list(variants) == expected_variants()
    for v in variants.values():
        assert v["error"] is None, v
        assert set(v["batches"]) == set(BATCHES)
        for stats in v["batches"].values():
            assert stats["runs"] == 3
            assert 0 < stats["min_ms"] <= stats["p50_ms"] <= stats["p90_ms"]
            assert stats["ratio_vs_fp32_eager"] > 0 and stats["ratio_vs_ort_int8"] > 0
            assert stats["cpu_ms_per_run"] >= 0 and stats["preempted_per_run"] >= 0
        assert v["peak_extra_mb"] >= 0
    assert all(variants["fp32_eager"]["batches"][b]["ratio_vs_fp32_eager"] == 1.0 for b in BATCHES)
    assert all(variants["ort_int8"]["batches"][b]["ratio_vs_ort_int8"] == 1.0 for b in BATCHES)
    assert variants["int8_lite"]["bytes"] == paths.lite.stat().st_size
    assert variants["int8_lite"]["size_ratio_vs_fp32"] == round(paths.lite.stat().st_size / paths.fp32.stat().st_size, 4)
    assert variants["int8_eager_qnnpack"]["bytes"] is None
    assert set(report["fastest"]) == set(BATCHES) and set(report["fastest"].values()) <= set(variants)
    assert "bench.json" in proc.stdout


def test_bench_png_is_a_real_chart(benched):
    paths, _ = benched
    png = paths.root / "bench.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as im:
        im.load()
        assert im.format == "PNG" and im.width > 0 and im.height > 0


def test_bench_md_has_the_table_and_says_which_artifact_is_which(benched):
    paths, _ = benched
    text = (paths.root / "bench.md").read_text()
    assert "| variant | engine | file | size | size vs fp32 | b1 p50 ms | b1 p90 ms | b1 vs fp32 eager | b1 vs ORT int8 |" in text
    table = [line for line in text.splitlines() if line.startswith("| ") and "variant" not in line]
    assert len(table) == len(expected_variants())
    assert "**Mobile artifact: `int8.ptl`**" in text
    assert "**Fastest on this host**" in text and "qnnpack" in text and "ARM" in text
    assert not list(paths.root.glob(".tmp-*"))  # atomic writes left no temp folders


def test_report_says_when_the_mobile_artifact_is_slower_than_fp32(benched):
    paths, _ = benched
    report = json.loads((paths.root / "bench.json").read_text())
    fake = copy.deepcopy(report)
    for v in fake["variants"]:
        if v["id"] == "int8_lite":
            v["batches"]["1"]["ratio_vs_fp32_eager"] = 3.2
    assert "3.20x the time of fp32 eager (slower than fp32!)" in markdown(fake)
    fake["host"].update(load_average={"start": 3.9, "end": 4.2}, busy=True, logical_cpus=2)
    assert "**Warning: the host was busy** (1-min load average 3.90 -> 4.20 on 2 CPUs)" in markdown(fake)


def test_bench_without_a_build_tells_the_user_to_build_first(tmp_path):
    recipe = tiny_recipe(tmp_path)
    proc = bench(recipe.source, tmp_path / "empty")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "run `doit build:tiny` first" in lines[0] and "fp32.safetensors" in lines[0]
    assert not (tmp_path / "empty" / "tiny" / "bench.json").exists()


def test_bench_rejects_bad_arguments_in_one_line(benched, tmp_path):
    paths, _ = benched
    recipe_file = paths.root.parent.parent / "tiny.yaml"
    proc = bench(recipe_file, paths.root.parent, "--batch-sizes", "1,x")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "--batch-sizes" in proc.stderr


LOG = [
    {"recipe": "r", "stage": "fp32", "seconds": 5.0, "peak_rss_mb": 900.0, "finished": "2026-11-01T10:00:00Z"},
    {"recipe": "r", "stage": "samples", "seconds": 0.5, "peak_rss_mb": 300.0, "finished": "2026-11-01T10:00:01Z"},
    {"recipe": "r", "stage": "int8", "seconds": 2.25, "peak_rss_mb": 1200.4, "finished": "2026-11-01T10:00:02Z"},
    {"recipe": "r", "stage": "fp32", "seconds": 4.0, "peak_rss_mb": 800.0, "finished": "2026-11-01T11:00:00Z"},
]


def test_format_costs_shows_the_latest_run_of_each_stage_in_build_order_and_a_total(tmp_path):
    log = tmp_path / "build-log.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in LOG))
    text = format_costs(log)
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert rows[0] == "| stage | seconds | peak RSS MB | finished (UTC) |"
    expected = {
        "samples": "| samples | 0.5 | 300 | 2026-11-01T10:00:01Z |",
        "fp32": "| fp32 | 4.0 | 800 | 2026-11-01T11:00:00Z |",  # the later of its two runs
        "int8": "| int8 | 2.2 | 1200 | 2026-11-01T10:00:02Z |",
    }
    order = [s.name for s in STAGES if s.name in expected]  # the pipeline's order, not the log's
    assert rows[1:] == [expected[name] for name in order] + ["| **total** | **6.8** | **1200** (max) | |"]
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
