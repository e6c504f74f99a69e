"""Measure every variant of a build, in one process, on the same real sample images and thread count.

Method, per measurement (one after another, each variant loaded fresh and released before the next):
  1. release memory (``gc.collect`` + glibc ``malloc_trim``), read the process RSS, reset the kernel's
     peak-RSS mark (``/proc/self/clear_refs``), set the quantized engine;
  2. load the variant (``vitq.model.runtimes.load``), then run the warm-up (at least one run per batch size, untimed);
  3. peak extra memory = kernel peak RSS (``VmHWM``) minus the RSS of step 1;
  4. ``repeats`` timed runs per batch size (``time.perf_counter`` around one forward call) ->
     p50, p90, mean, min in ms per batch, plus process CPU time and involuntary context switches per run.
Where ``clear_refs`` is not available, step 3 samples RSS every 2 ms in a thread (load + warm-up only, never
during timed runs).

Which variants: ``variants_for(recipe)`` in table order. A quantized variant made in memory (int8 eager) packs
its weights for the engine set while it is quantized, so it is measured once per engine of this torch build:
with the recipe's engine under its own id, with each other engine as ``<id>@<engine>``.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import platform
import re
import resource
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vitq.errors import VitqError
from vitq.layout import ArtifactPaths, failed_candidates
from vitq.orchestration.pipeline import model_files
from vitq.recipe import ENGINES, Recipe
from vitq.variants import CROSS_CHECK, REFERENCE, Variant, loaded_from, mobile_variant, variants_for

SCHEMA_ID = "vitq.bench/2"
RATIO_TO = {REFERENCE: f"ratio_vs_{REFERENCE}", CROSS_CHECK: f"ratio_vs_{CROSS_CHECK}"}
MB = 1024 * 1024


# ----------------------------------------------------------------------------------------------- what to measure
@dataclass(frozen=True)
class Measurement:
    """One row of the report: a variant, run with one quantized engine (None: a float variant)."""

    id: str
    variant: Variant
    engine: str | None
    label: str


def measurements(recipe: Recipe, supported_engines: list[str]) -> list[Measurement]:
    """Every variant of the build in table order; in-memory quantized ones once per available engine."""
    out = []
    for v in variants_for(recipe):
        engine = v.engine_for(recipe)
        out.append(Measurement(v.id, v, engine, f"{v.label} [{engine}]" if engine else v.label))
        if engine and v.file is None:  # quantized while loading: the engine decides the kernels
            out += [Measurement(f"{v.id}@{e}", v, e, f"{v.label} [{e}]")
                    for e in ENGINES if e != engine and e in supported_engines]
    return out


def check_built(recipe: Recipe, paths: ArtifactPaths) -> None:
    """One line naming the missing build outputs, if any."""
    required = [paths.samples_labels, *model_files(recipe, paths).values()]
    missing = [p.relative_to(paths.root).as_posix() for p in required if not p.is_file()]
    if missing:
        raise VitqError(f"{recipe.name}: no complete build in {paths.root} (missing {', '.join(missing)}); "
                        f"run `doit build:{recipe.name}` first")


# ----------------------------------------------------------------------------------------------- inputs
@dataclass
class Inputs:
    batches: dict[int, Any]  # batch size -> float tensor [b, 3, crop, crop]
    images: int  # distinct images in the largest batch


def load_inputs(recipe: Recipe, paths: ArtifactPaths, batch_sizes: tuple[int, ...]) -> Inputs:
    """Real sample images, preprocessed by the recipe; repeated to fill the largest batch."""
    from vitq.model.preprocess import load_batch
    from vitq.model.samples import read_samples

    samples = read_samples(paths.samples_labels)
    largest = max(batch_sizes)
    unique = load_batch(recipe.preprocess, [s.path for s in samples[:largest]])
    full = unique[[i % len(unique) for i in range(largest)]].contiguous()
    return Inputs({b: full[:b].contiguous() for b in batch_sizes}, images=min(len(samples), largest))


# ----------------------------------------------------------------------------------------------- memory
def _status_kb(field_name: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    found = re.search(rf"^{field_name}:\s+(\d+) kB", text, re.M)
    return int(found.group(1)) if found else None


def _current_rss() -> int:
    kb = _status_kb("VmRSS")
    if kb is not None:
        return kb * 1024
    import psutil

    return psutil.Process().memory_info().rss


def release_memory() -> None:
    """Give freed memory back to the OS, so the next variant's RSS baseline is honest."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakMemory:
    """Peak RSS above the RSS at start(): the kernel's own peak mark where it can be reset, else sampled."""

    def __init__(self) -> None:
        self.method = ""
        self.baseline = 0
        self._peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> PeakMemory:
        self.baseline = _current_rss()
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS (Linux >= 4.0)
            if _status_kb("VmHWM") is None:
                raise OSError
            self.method = "kernel peak RSS (VmHWM after /proc/self/clear_refs reset) minus RSS before loading"
        except OSError:
            self.method = "RSS sampled every 2 ms (psutil) during load + warm-up, minus RSS before loading"
            self._peak = self.baseline
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self._peak = max(self._peak, _current_rss())

    def stop(self) -> float:
        """Peak extra memory in MiB since start()."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            peak = max(self._peak, _current_rss())
        else:
            peak = (_status_kb("VmHWM") or 0) * 1024
        return max(0.0, (peak - self.baseline) / MB)


# ----------------------------------------------------------------------------------------------- host
def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def host_info() -> dict[str, Any]:
    return {"cpu": cpu_model(), "machine": platform.machine(), "system": platform.system(),
            "logical_cpus": os.cpu_count(), "affinity_cpus": _affinity()}


def load_average() -> float | None:
    with contextlib.suppress(AttributeError, OSError):
        return round(os.getloadavg()[0], 2)
    return None


def busy(host: dict[str, Any]) -> bool:
    """Other processes competed for the cores: 1-min load above the CPU count (this run counts for its threads)."""
    loads = [v for v in host["load_average"].values() if v is not None]
    cpus = host.get("affinity_cpus") or host.get("logical_cpus") or 1
    return bool(loads) and max(loads) > cpus + 0.5


def _affinity() -> int | None:
    with contextlib.suppress(AttributeError, OSError):
        return len(os.sched_getaffinity(0))
    return None


# ----------------------------------------------------------------------------------------------- one variant
def _new_record(m: Measurement, files: dict[str, Path]) -> dict[str, Any]:
    file = files.get(m.variant.id) if m.variant.file else None
    made_from = files[loaded_from(m.variant.id)].name
    return {
        "id": m.id, "variant": m.variant.id, "label": m.label, "runtime": m.variant.runtime, "engine": m.engine,
        "file": file.name if file else None, "shipped": m.variant.shipped,
        "bytes": file.stat().st_size if file else None,
        "note": "" if file else f"made in memory from {made_from} (peak includes the fp32 model)",
        "error": None, "load_seconds": None, "peak_extra_mb": None, "batches": {},
    }


def measure(m: Measurement, recipe: Recipe, files: dict[str, Path], threads: int, inputs: Inputs,
            warm: int, repeats: int, bar: Any) -> tuple[dict[str, Any], str]:
    """Load one variant fresh, warm it up, time it; a failure is recorded, never raised."""
    from vitq.model import runtimes
    from vitq.model.torch_setup import set_engine

    record = _new_record(m, files)
    engine = m.engine or recipe.quantize.engine
    steps, done_before = len(inputs.batches) * (warm + repeats), bar.n
    run = None
    release_memory()
    set_engine(recipe, engine)
    memory = PeakMemory().start()
    try:
        started = time.perf_counter()
        run = runtimes.load(m.variant.id, recipe, files, threads, engine=m.engine)
        record["load_seconds"] = round(time.perf_counter() - started, 4)
        set_engine(recipe, engine)
        for batch in inputs.batches.values():
            for _ in range(warm):
                run(batch)
                bar.update(1)
        record["peak_extra_mb"] = round(memory.stop(), 1)
        where = bar.postfix
        for b, batch in inputs.batches.items():
            bar.set_postfix_str(f"{where}, batch {b}")
            record["batches"][str(b)] = time_runs(run, batch, repeats, bar)
    except Exception as exc:  # one broken variant must not hide the others' numbers
        memory.stop()
        lines = str(exc).strip().splitlines()
        record["error"] = f"{type(exc).__name__}: {lines[0][:300] if lines else ''}"
        record["batches"] = {}
        bar.update(steps - (bar.n - done_before))  # the progress bar still ends at its total
    finally:
        del run
        release_memory()
    return record, memory.method


def time_runs(run: Any, batch: Any, repeats: int, bar: Any) -> dict[str, Any]:
    """``repeats`` timed forward calls on one batch: latency statistics, CPU time and preemptions per run."""
    times = []
    before = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(repeats):
        t0 = time.perf_counter()
        run(batch)
        times.append((time.perf_counter() - t0) * 1000.0)
        bar.update(1)
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu_ms = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000.0
    return {**stats(times),
            "cpu_ms_per_run": round(cpu_ms / repeats, 3),  # all threads of this process
            "preempted_per_run": round((after.ru_nivcsw - before.ru_nivcsw) / repeats, 1)}


def stats(times_ms: list[float]) -> dict[str, Any]:
    import numpy as np

    arr = np.asarray(times_ms, dtype=np.float64)
    return {
        "p50_ms": round(float(np.percentile(arr, 50)), 4),
        "p90_ms": round(float(np.percentile(arr, 90)), 4),
        "mean_ms": round(float(arr.mean()), 4),
        "min_ms": round(float(arr.min()), 4),
        "runs": len(times_ms),
    }


# ----------------------------------------------------------------------------------------------- the whole run
def run_bench(recipe: Recipe, paths: ArtifactPaths, repeats: int, warmup: int, batch_sizes: tuple[int, ...],
              threads: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Measure every variant (and int8 eager per engine); return the report (see ``assemble``)."""
    import torch

    from vitq.progress import Progress

    if repeats < 1 or warmup < 0:
        raise VitqError(f"{recipe.name}: --repeats must be >= 1 and --warmup >= 0")
    batch_sizes = tuple(sorted({int(b) for b in batch_sizes}))
    if not batch_sizes or batch_sizes[0] < 1:
        raise VitqError(f"{recipe.name}: batch sizes must be positive integers")
    check_built(recipe, paths)
    threads = threads or recipe.threads
    torch.set_num_threads(threads)
    inputs = load_inputs(recipe, paths, batch_sizes)
    files = model_files(recipe, paths)
    failed = failed_candidates(files)  # no program to time
    todo = [m for m in measurements(recipe, list(torch.backends.quantized.supported_engines)) if m.id not in failed]
    warm = max(1, warmup)
    host = {**host_info(), "load_average": {"start": load_average()}}
    bar = Progress(len(todo) * len(batch_sizes) * (warm + repeats), f"{len(todo)} variants x batch "
                   f"{','.join(map(str, batch_sizes))}", "runs", fallback_prefix=f"bench:{recipe.name}",
                   mode=None if progress else "off")
    results, method = [], ""
    with bar:
        for i, m in enumerate(todo, 1):
            bar.set_postfix_str(f"variant {i}/{len(todo)}: {m.label}")
            record, method_used = measure(m, recipe, files, threads, inputs, warm, repeats, bar)
            method = method or method_used
            if record["error"]:
                bar.write(f"{m.id}: FAILED: {record['error']}")
            results.append(record)
    torch.backends.quantized.engine = recipe.quantize.engine
    host["load_average"]["end"] = load_average()
    host["busy"] = busy(host)
    return assemble(recipe, results, inputs, batch_sizes, threads, repeats, warmup, method, host)


def add_ratios(results: list[dict[str, Any]]) -> None:
    """Size vs fp32; per batch size, p50 vs fp32's and vs onnxruntime int8's (below 1 = faster)."""
    by_id = {r["id"]: r for r in results}
    fp32_bytes = by_id[REFERENCE]["bytes"]
    for r in results:
        r["size_ratio_vs_fp32"] = round(r["bytes"] / fp32_bytes, 4) if r["bytes"] is not None else None
        for b, s in r["batches"].items():
            for ref_id, key in RATIO_TO.items():
                ref = by_id.get(ref_id, {}).get("batches", {}).get(b)
                s[key] = round(s["p50_ms"] / ref["p50_ms"], 4) if ref and ref["p50_ms"] > 0 else None


def fastest(results: list[dict[str, Any]], batch_sizes: tuple[int, ...]) -> dict[str, str]:
    out = {}
    for b in map(str, batch_sizes):
        timed = [r for r in results if b in r["batches"]]
        if timed:
            out[b] = min(timed, key=lambda r: r["batches"][b]["p50_ms"])["id"]
    return out


def assemble(recipe: Recipe, results: list[dict[str, Any]], inputs: Inputs, batch_sizes: tuple[int, ...],
             threads: int, repeats: int, warmup: int, memory_method: str, host: dict[str, Any]) -> dict[str, Any]:
    """The report: what was measured, on what, how; ``variants`` holds one record per measurement."""
    from vitq.check.versions import recorded_versions

    add_ratios(results)
    crop = recipe.preprocess.crop
    return {
        "schema": SCHEMA_ID,
        "recipe": {"name": recipe.name, "version": recipe.version, "model": f"{recipe.model.source}:{recipe.model.name}",
                   "weights": recipe.weights.kind, "quantize": recipe.section("quantize")["quantize"]},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": host,
        "threads": threads,
        "thread_settings": "torch.set_num_threads(threads); onnxruntime intra_op_num_threads=threads, inter_op=1, sequential",
        "versions": recorded_versions(),
        "repeats": repeats,
        "warmup": warmup,
        "batch_sizes": list(batch_sizes),
        "input": {"shape_per_image": [3, crop, crop], "distinct_images": inputs.images,
                  "source": "samples/ (the build's sample images, preprocessed by the recipe; repeated to fill a batch)"},
        "timing": "time.perf_counter around one forward call per run (torch under no_grad); ms per batch",
        "memory": memory_method,
        "mobile": mobile_variant(v.id for v in variants_for(recipe)),
        "fastest": fastest(results, batch_sizes),
        "variants": results,
    }

