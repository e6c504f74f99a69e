"""The benchmark on a tiny real build (random weights), run as a user runs it; its report and chart on a
hand-made report.

No timed assertions: only that every variant was measured and the three outputs are well formed.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import pytest
import torch
from PIL import Image

from vitq.bench.chart import chart
from vitq.bench.measure import ENGINES
from vitq.bench.report import markdown
from vitq.layout import ArtifactPaths
from vitq.recipe import load_recipe
from vitq.variants import VARIANTS

from conftest import REPO
from helpers_models import tiny_recipe

BATCHES = ("1", "8")


def bench(recipe_file, root, *extra):
    return subprocess.run(
        [sys.executable, "-m", "vitq.bench", str(recipe_file), str(root), "--repeats", "2", "--warmup", "1", *extra],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )


@pytest.fixture(scope="module")
def benched(tiny_build, tmp_path_factory):
    """A private copy of the shared tiny build (recipe, images, artifacts), benchmarked as a user would."""
    import shutil

    folder = tmp_path_factory.mktemp("bench") / "tiny"
    shutil.copytree(tiny_build.root.parent.parent, folder)
    recipe = load_recipe(folder / "tiny.yaml")
    paths = ArtifactPaths.for_recipe(folder / "artifacts", recipe.name)
    proc = bench(recipe.source, folder / "artifacts")
    assert proc.returncode == 0, proc.stderr
    return paths, proc


def expected_variants():
    """The table's rows; int8 eager again for every other engine of this torch build (the recipe's: qnnpack)."""
    others = [e for e in ENGINES if e != "qnnpack" and e in torch.backends.quantized.supported_engines]
    ids = [v.id for v in VARIANTS if v.strategy in (None, "dynamic_int8")]  # the tiny build's one .pte candidate
    at = ids.index("int8_eager") + 1
    return ids[:at] + [f"int8_eager@{e}" for e in others] + ids[at:]


@pytest.mark.e2e  # the command in a subprocess, on a real build
def test_bench_json_has_every_variant_at_both_batch_sizes(benched):
    paths, proc = benched
    report = json.loads((paths.root / "bench.json").read_text())
    assert report["schema"] == "vitq.bench/2"
    assert report["threads"] == 1 and report["repeats"] == 2 and report["warmup"] == 1
    assert report["batch_sizes"] == [1, 8]
    assert report["host"]["cpu"] and report["host"]["machine"]
    assert report["versions"]["torch"] == torch.__version__.split("+")[0]
    assert report["memory"] and report["mobile"] == "lite"
    assert set(report["host"]["load_average"]) == {"start", "end"} and isinstance(report["host"]["busy"], bool)
    variants = {v["id"]: v for v in report["variants"]}
    assert list(variants) == expected_variants()
    for v in variants.values():
        assert v["error"] is None, v
        assert set(v["batches"]) == set(BATCHES)
        for stats in v["batches"].values():
            assert stats["runs"] == 2
            assert 0 < stats["min_ms"] <= stats["p50_ms"] <= stats["p90_ms"]
            assert stats["ratio_vs_fp32"] > 0 and stats["ratio_vs_onnx_int8"] > 0
            assert stats["cpu_ms_per_run"] >= 0 and stats["preempted_per_run"] >= 0
        assert v["peak_extra_mb"] >= 0 and v["load_seconds"] >= 0
        assert v["id"].split("@")[0] == v["variant"] and isinstance(v["shipped"], bool)
    assert all(variants["fp32"]["batches"][b]["ratio_vs_fp32"] == 1.0 for b in BATCHES)
    assert all(variants["onnx_int8"]["batches"][b]["ratio_vs_onnx_int8"] == 1.0 for b in BATCHES)
    lite, fp32 = paths.file("lite").stat().st_size, paths.file("fp32").stat().st_size
    assert variants["lite"]["bytes"] == lite and variants["lite"]["file"] == "int8.ptl" and variants["lite"]["shipped"]
    assert variants["lite"]["size_ratio_vs_fp32"] == round(lite / fp32, 4)
    assert variants["int8_eager"]["bytes"] is None and variants["int8_eager"]["file"] is None
    assert variants["int8_eager"]["engine"] == "qnnpack" and variants["int8_eager"]["label"] == "int8 eager [qnnpack]"
    assert not variants["fp32_script"]["shipped"] and variants["fp32_script"]["engine"] is None
    for other in [v for v in variants if "@" in v]:
        engine = other.split("@")[1]
        assert variants[other]["variant"] == "int8_eager" and variants[other]["engine"] == engine
        assert variants[other]["label"] == f"int8 eager [{engine}]"
    assert set(report["fastest"]) == set(BATCHES) and set(report["fastest"].values()) <= set(variants)
    assert f"tiny:bench    {len(variants)} variants x batch 1,8, 1 thread(s) -> bench.json, bench.md, bench.png" in proc.stdout


@pytest.mark.e2e  # the command in a subprocess, on a real build
def test_bench_png_is_a_real_chart(benched):
    paths, _ = benched
    png = paths.bench_files["png"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as im:
        im.load()
        assert im.format == "PNG" and im.width > 0 and im.height > 0


@pytest.mark.e2e  # the command in a subprocess, on a real build
def test_bench_md_has_the_table_and_says_which_artifact_is_which(benched):
    paths, _ = benched
    text = paths.bench_files["md"].read_text()
    assert "| variant | engine | file | size | size vs fp32 | b1 p50 ms | b1 p90 ms | b1 vs fp32 | b1 vs onnx_int8 |" in text
    table = [line for line in text.splitlines() if line.startswith("| ") and "variant" not in line]
    assert len(table) == len(expected_variants())
    assert "**Mobile artifact: `int8.ptl`**" in text
    assert "**Fastest on this host**" in text and "qnnpack" in text and "ARM" in text
    assert not list(paths.root.glob(".tmp-*"))  # atomic writes left no temp folders


@pytest.mark.e2e  # the command in a subprocess, on a real build
def test_report_says_when_the_mobile_artifact_is_slower_than_fp32(benched):
    paths, _ = benched
    report = json.loads(paths.bench_files["json"].read_text())
    fake = copy.deepcopy(report)
    for v in fake["variants"]:
        if v["id"] == "lite":
            v["batches"]["1"]["ratio_vs_fp32"] = 3.2
    assert "3.20x the time of fp32 eager (slower than fp32!)" in markdown(fake)
    fake["host"].update(load_average={"start": 3.9, "end": 4.2}, busy=True, logical_cpus=2)
    assert "**Warning: the host was busy** (1-min load average 3.90 -> 4.20 on 2 CPUs)" in markdown(fake)


@pytest.mark.e2e
def test_bench_without_a_build_tells_the_user_to_build_first(tmp_path):
    recipe = tiny_recipe(tmp_path)
    proc = bench(recipe.source, tmp_path / "empty")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "run `doit build:tiny` first" in lines[0] and "fp32.safetensors" in lines[0]
    assert not (tmp_path / "empty" / "tiny" / "bench.json").exists()


@pytest.mark.e2e  # the command in a subprocess, on a real build
def test_bench_rejects_bad_arguments_in_one_line(benched, tmp_path):
    paths, _ = benched
    recipe_file = paths.root.parent.parent / "tiny.yaml"
    proc = bench(recipe_file, paths.root.parent, "--batch-sizes", "1,x")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "--batch-sizes" in proc.stderr


# ----------------------------------------------------------------------------------------------- no torch needed
def record(id_, label, engine, file, size, p50, *, error=None):
    batches = {} if error else {"1": {"p50_ms": p50, "p90_ms": p50 * 1.1, "mean_ms": p50, "min_ms": p50 * 0.9,
                                      "runs": 3, "ratio_vs_fp32": round(p50 / 10.0, 4),
                                      "ratio_vs_onnx_int8": round(p50 / 2.0, 4)}}
    return {"id": id_, "variant": id_.split("@")[0], "label": label, "runtime": "x", "engine": engine, "file": file,
            "shipped": file is not None, "bytes": size, "note": "", "error": error, "load_seconds": 0.1,
            "peak_extra_mb": None if error else 12.0, "batches": batches,
            "size_ratio_vs_fp32": None if size is None else round(size / 4_000_000, 4)}


def small_report(busy=False):
    return {
        "schema": "vitq.bench/2",
        "recipe": {"name": "toy", "version": "1", "model": "timm:toy", "weights": "random",
                   "quantize": {"dtype": "qint8", "engine": "qnnpack"}},
        "host": {"cpu": "Test CPU", "machine": "x86_64", "logical_cpus": 2, "affinity_cpus": 2,
                 "load_average": {"start": 0.5, "end": 3.5 if busy else 0.6}, "busy": busy},
        "threads": 2, "thread_settings": "fixed", "versions": {"torch": "2.12.1", "onnxruntime": "1", "python": "3"},
        "repeats": 3, "warmup": 1, "batch_sizes": [1],
        "input": {"shape_per_image": [3, 32, 32], "distinct_images": 1, "source": "samples/"},
        "timing": "perf_counter", "memory": "VmHWM", "mobile": "lite",
        "fastest": {"1": "onnx_int8"},
        "variants": [
            record("fp32", "fp32 eager", None, "fp32.safetensors", 4_000_000, 10.0),
            record("int8_eager", "int8 eager [qnnpack]", "qnnpack", None, None, 30.0),
            record("int8_eager@x86", "int8 eager [x86]", "x86", None, None, 4.0),
            record("lite", "int8 .ptl lite [qnnpack]", "qnnpack", "int8.ptl", 1_000_000, 31.0),
            record("onnx_fp32", "onnxruntime fp32", None, "fp32.onnx", 4_000_000, 0.0, error="RuntimeError: boom"),
            record("onnx_int8", "onnxruntime int8", None, "int8.onnx", 1_000_000, 2.0),
        ],
    }


def test_markdown_of_a_hand_made_report_names_the_mobile_artifact_and_the_fastest():
    text = markdown(small_report())
    rows = [line for line in text.splitlines() if line.startswith("| ") and "variant" not in line]
    assert len(rows) == 6
    assert "| int8 eager [x86] | x86 | (in memory) |" in text
    assert "| onnxruntime fp32 |  | `fp32.onnx` | 4.0 MB | 1.000x | FAILED |" in text
    assert "- **onnxruntime fp32 failed:** RuntimeError: boom" in text
    assert "**Mobile artifact: `int8.ptl`**" in text and "1.0 MB, 0.25x of fp32" in text
    assert "**onnxruntime int8** (`int8.onnx`), p50 2.00 ms = 0.20x fp32 eager" in text
    assert "the `.ptl` takes 3.10x the time of fp32 eager (slower than fp32!)" in text
    assert "with the x86 engine (int8 eager [x86]," in text and "take 0.40x" in text
    assert "onnxruntime int8 (`int8.onnx`)" in text and "Warning" not in text
    assert "**Warning: the host was busy** (1-min load average 0.50 -> 3.50 on 2 CPUs)" in markdown(small_report(True))


def test_chart_of_a_hand_made_report_is_a_png(tmp_path):
    out = tmp_path / "bench.png"
    chart(small_report(), out)
    with Image.open(out) as im:
        im.load()
        assert im.format == "PNG" and im.width > 0 and im.height > 0


def test_listing_tasks_does_not_import_the_bench(tmp_path):
    code = ("import sys, dodo, vitq.orchestration.tasks; list(dodo.task_vitq()); "
            "print('vitq.bench' in sys.modules, sorted(m for m in sys.modules if m.startswith('vitq.bench')))")
    env = {**os.environ, "VITQ_ARTIFACTS": str(tmp_path / "artifacts")}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("False []"), proc.stdout
