"""vitq.bench.measure called directly (tests/test_bench.py runs the whole bench as a user does, e2e): which
measurements a build gets, what a missing build says, the inputs, one variant measured and one broken variant
recorded rather than raised, the statistics and ratios of the report, and the peak-memory meter."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest
import torch

from vitq.bench.measure import (
    PeakMemory,
    add_ratios,
    busy,
    check_built,
    fastest,
    host_info,
    load_inputs,
    measure,
    measurements,
    run_bench,
    stats,
)
from vitq.errors import VitqError
from vitq.layout import ArtifactPaths
from vitq.model.preprocess import load_batch
from vitq.model.samples import read_samples
from vitq.orchestration.pipeline import model_files
from vitq.progress import Progress
from vitq.recipe import load_recipe
from vitq.variants import variants_for

ALL_ENGINES = ["qnnpack", "x86", "fbgemm"]


@pytest.fixture(scope="module")
def tiny(tiny_build):
    return load_recipe(tiny_build.root.parent.parent / "tiny.yaml"), tiny_build


def with_engine(recipe, engine):
    return recipe.model_copy(update={"quantize": recipe.quantize.model_copy(update={"engine": engine})})


# ----------------------------------------------------------------------------------------------- what is measured


def test_every_variant_once_and_the_in_memory_int8_once_per_engine_of_this_torch(tiny):
    recipe, _ = tiny
    table = [v.id for v in variants_for(recipe)]
    got = measurements(recipe, ALL_ENGINES)
    at = table.index("int8_eager") + 1
    assert [m.id for m in got] == table[:at] + ["int8_eager@x86", "int8_eager@fbgemm"] + table[at:]
    by_id = {m.id: m for m in got}
    assert (by_id["int8_eager"].engine, by_id["int8_eager"].label) == ("qnnpack", "int8 eager [qnnpack]")
    assert (by_id["int8_eager@x86"].engine, by_id["int8_eager@x86"].label) == ("x86", "int8 eager [x86]")
    assert by_id["int8_eager@x86"].variant.id == "int8_eager"
    assert by_id["lite"].engine == "qnnpack" and by_id["fp32"].engine is None and by_id["fp32"].label == "fp32 eager"
    # an engine this torch lacks is not measured; the recipe's own engine is never repeated
    assert [m.id for m in measurements(recipe, ["qnnpack"])] == table
    x86 = [m.id for m in measurements(with_engine(recipe, "x86"), ALL_ENGINES)]
    assert [i for i in x86 if i.startswith("int8_eager")] == ["int8_eager", "int8_eager@qnnpack", "int8_eager@fbgemm"]


def test_a_build_with_missing_files_is_one_line_naming_them_and_the_command_to_run(tiny, tmp_path):
    recipe, build = tiny
    check_built(recipe, build)  # complete: no error
    partial = ArtifactPaths.for_recipe(tmp_path, "tiny")
    shutil.copytree(build.root, partial.root)
    partial.file("lite").unlink()
    shutil.rmtree(partial.samples_dir)
    with pytest.raises(VitqError) as info:
        check_built(recipe, partial)
    assert str(info.value) == (f"tiny: no complete build in {partial.root} (missing samples/labels.csv, int8.ptl); "
                               "run `doit build:tiny` first")


@pytest.mark.parametrize("repeats, warmup, batches", [(0, 1, (1,)), (1, -1, (1,)), (1, 1, ()), (1, 1, (0, 8))])
def test_bad_arguments_are_one_line_before_anything_is_loaded(tmp_path, tiny, repeats, warmup, batches):
    recipe, _ = tiny
    with pytest.raises(VitqError, match=r"^tiny: (--repeats must be >= 1 and --warmup >= 0|batch sizes must be positive"
                                        r" integers)$"):
        run_bench(recipe, ArtifactPaths.for_recipe(tmp_path, "tiny"), repeats, warmup, batches, progress=False)


def test_inputs_are_the_build_samples_preprocessed_and_repeated_to_fill_the_largest_batch(tiny):
    recipe, build = tiny
    inputs = load_inputs(recipe, build, (1, 8))
    samples = read_samples(build.samples_labels)
    assert len(samples) == 6 and inputs.images == 6 and set(inputs.batches) == {1, 8}
    unique = load_batch(recipe.preprocess, [s.path for s in samples])
    eight = inputs.batches[8]
    assert eight.shape == (8, 3, 32, 32) and eight.is_contiguous()
    assert torch.equal(eight[:6], unique) and torch.equal(eight[6:], unique[:2])
    assert torch.equal(inputs.batches[1], unique[:1])
    assert load_inputs(recipe, build, (2,)).images == 2


# ----------------------------------------------------------------------------------------------- one variant


@pytest.fixture
def bar():
    with Progress(6, mode="off") as progress:
        yield progress


def test_one_variant_is_loaded_warmed_and_timed_at_every_batch_size(tiny, bar):
    recipe, build = tiny
    inputs = load_inputs(recipe, build, (1, 8))
    target = next(m for m in measurements(recipe, ALL_ENGINES) if m.id == "onnx_int8")
    record, method = measure(target, recipe, model_files(recipe, build), 1, inputs, warm=1, repeats=2, bar=bar)
    assert record["error"] is None and method
    assert (record["file"], record["bytes"]) == ("int8.onnx", build.file("onnx_int8").stat().st_size)
    assert record["shipped"] and record["engine"] is None and record["label"] == target.label
    assert record["load_seconds"] >= 0 and record["peak_extra_mb"] >= 0
    assert set(record["batches"]) == {"1", "8"}
    for timing in record["batches"].values():
        assert timing["runs"] == 2 and 0 < timing["min_ms"] <= timing["p50_ms"] <= timing["p90_ms"]
        assert timing["cpu_ms_per_run"] >= 0 and timing["preempted_per_run"] >= 0
    assert bar.n == 6  # 2 batch sizes x (1 warm-up + 2 timed runs)


def test_a_broken_variant_is_recorded_not_raised_and_the_progress_still_ends(tiny, bar, tmp_path, monkeypatch):
    from vitq.bench import measure as measure_module

    monkeypatch.setattr(measure_module, "release_memory", lambda: None)  # gc between variants: not tested here
    recipe, build = tiny
    files = model_files(recipe, build)
    files["lite"] = tmp_path / "int8.ptl"
    files["lite"].write_bytes(build.file("lite").read_bytes()[:1000])
    inputs = load_inputs(recipe, build, (1, 8))
    target = next(m for m in measurements(recipe, ALL_ENGINES) if m.id == "lite")
    record, _ = measure(target, recipe, files, 1, inputs, warm=1, repeats=2, bar=bar)
    assert record["error"].startswith("InputError: ") and "int8.ptl" in record["error"]
    assert "\n" not in record["error"] and len(record["error"]) < 400
    assert record["batches"] == {} and record["peak_extra_mb"] is None and record["load_seconds"] is None
    assert record["bytes"] == 1000 and record["engine"] == "qnnpack"
    assert bar.n == 6 and torch.backends.quantized.engine == "qnnpack"


# ----------------------------------------------------------------------------------------------- the report


def test_latency_statistics():
    assert stats([float(i) for i in range(1, 11)]) == {"p50_ms": 5.5, "p90_ms": 9.1, "mean_ms": 5.5, "min_ms": 1.0,
                                                       "runs": 10}
    assert stats([2.123456]) == {"p50_ms": 2.1235, "p90_ms": 2.1235, "mean_ms": 2.1235, "min_ms": 2.1235, "runs": 1}


def result(id_, size, p50s):
    return {"id": id_, "bytes": size, "batches": {b: {"p50_ms": v} for b, v in p50s.items()}}


def test_ratios_compare_size_with_fp32_and_latency_with_fp32_and_onnxruntime_int8():
    results = [result("fp32", 4000, {"1": 10.0, "8": 40.0}), result("int8_eager", None, {"1": 20.0}),
               result("lite", 1000, {"1": 5.0, "8": 30.0}), result("onnx_int8", 1200, {"1": 2.0}),
               result("pte", 900, {})]
    add_ratios(results)
    by_id = {r["id"]: r for r in results}
    assert [r["size_ratio_vs_fp32"] for r in results] == [1.0, None, 0.25, 0.3, 0.225]
    assert by_id["lite"]["batches"]["1"] == {"p50_ms": 5.0, "ratio_vs_fp32": 0.5, "ratio_vs_onnx_int8": 2.5}
    assert by_id["lite"]["batches"]["8"] == {"p50_ms": 30.0, "ratio_vs_fp32": 0.75, "ratio_vs_onnx_int8": None}
    assert by_id["fp32"]["batches"]["1"]["ratio_vs_fp32"] == 1.0 and by_id["pte"]["batches"] == {}


def test_a_reference_that_failed_or_took_no_time_gives_no_ratio():
    results = [result("fp32", 4000, {"1": 0.0}), result("lite", 1000, {"1": 5.0})]
    add_ratios(results)
    assert results[1]["batches"]["1"] == {"p50_ms": 5.0, "ratio_vs_fp32": None, "ratio_vs_onnx_int8": None}


def test_the_fastest_variant_per_batch_size_among_those_timed():
    results = [result("fp32", 1, {"1": 10.0, "8": 40.0}), result("lite", 1, {"1": 5.0}), result("pte", 1, {})]
    assert fastest(results, (1, 8, 32)) == {"1": "lite", "8": "fp32"}


@pytest.mark.parametrize("loads, cpus, expected", [
    ({"start": 0.5, "end": 1.0}, {"affinity_cpus": 2}, False),
    ({"start": 0.5, "end": 2.6}, {"affinity_cpus": 2}, True),
    ({"start": 2.4, "end": None}, {"affinity_cpus": 2, "logical_cpus": 16}, False),
    ({"start": 3.0, "end": None}, {"affinity_cpus": None, "logical_cpus": 2}, True),
    ({"start": None, "end": None}, {"affinity_cpus": 1}, False),
])
def test_the_host_is_busy_when_the_load_exceeds_the_cpus_this_run_may_use(loads, cpus, expected):
    assert busy({"load_average": loads, **cpus}) is expected


def test_the_host_is_described_by_its_cpu_and_counts():
    host = host_info()
    assert isinstance(host["cpu"], str) and host["cpu"] and host["machine"] and host["system"]
    assert host["logical_cpus"] >= 1 and (host["affinity_cpus"] is None or 1 <= host["affinity_cpus"])


# ----------------------------------------------------------------------------------------------- peak memory


def touch_and_free(megabytes):
    """Allocate and touch ``megabytes``, hold them a moment, give them back (an mmap'd block: to the OS at once)."""
    block = np.ones(megabytes * 1024 * 1024, dtype=np.uint8)
    time.sleep(0.05)  # several 2 ms samples, even on a busy host
    del block


def test_the_peak_counts_memory_already_given_back_and_not_what_was_there_before():
    before = np.ones(64 * 1024 * 1024, dtype=np.uint8)  # resident before start: not counted
    meter = PeakMemory().start()
    touch_and_free(64)
    peak = meter.stop()
    assert 60 <= peak < 120, peak
    assert meter.method.startswith("kernel peak RSS")
    del before


def test_where_the_kernel_mark_cannot_be_reset_the_rss_is_sampled(monkeypatch):
    from vitq.bench import measure as measure_module

    real = measure_module._status_kb
    monkeypatch.setattr(measure_module, "_status_kb", lambda name: None if name == "VmHWM" else real(name))
    meter = PeakMemory().start()
    touch_and_free(64)
    peak = meter.stop()
    assert meter.method.startswith("RSS sampled every 2 ms")
    assert 60 <= peak < 120, peak
    assert not meter._thread.is_alive()
