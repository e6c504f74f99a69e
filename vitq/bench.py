"""Benchmark every variant of a build side by side: latency, file size and peak extra memory.

    python -m vitq.bench RECIPE_FILE ARTIFACTS_ROOT [--repeats N] [--warmup N] [--threads N] [--batch-sizes 1,8]

Writes ``bench.json`` (machine-readable), ``bench.md`` (table + which artifact is for which target)
and ``bench.png`` (latency and size per variant) into ``artifacts/<recipe>/``. Every variant is
measured in the same process, on the same real sample images, with the same fixed thread count
(torch intra-op threads and onnxruntime intra-op threads), so the ratios are comparable.

Method, per variant (one after another, each loaded fresh and released before the next):
  1. release memory (``gc.collect`` + glibc ``malloc_trim``), read the process RSS, reset the
     kernel's peak-RSS mark (``/proc/self/clear_refs``), set the quantized engine;
  2. load the variant, then run the warm-up (at least one run per batch size, untimed);
  3. peak extra memory = kernel peak RSS (``VmHWM``) minus the RSS of step 1;
  4. ``repeats`` timed runs per batch size (``time.perf_counter`` around one forward call) ->
     p50, p90, mean, min in ms per batch.
Where ``clear_refs`` is not available, step 3 samples RSS every 2 ms in a thread (load + warm-up
only, never during timed runs).

Exit codes: 0 done, 2 user error (one line on stderr).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import platform
import re
import resource
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from vitq.errors import VitqError, run_command
from vitq.layout import ArtifactPaths
from vitq.recipe import Recipe
from vitq.report import human_size

SCHEMA_ID = "vitq.bench/1"
DEFAULT_REPEATS = 10
DEFAULT_WARMUP = 2
DEFAULT_BATCH_SIZES = (1, 8)
ENGINES = ("qnnpack", "x86", "fbgemm")  # measured where this torch build has them
FP32_EAGER, ORT_INT8, LITE = "fp32_eager", "ort_int8", "int8_lite"
MB = 1024 * 1024


def bench_files(paths: ArtifactPaths) -> dict[str, Path]:
    return {"json": paths.root / "bench.json", "md": paths.root / "bench.md", "png": paths.root / "bench.png"}


def required_files(recipe: Recipe, paths: ArtifactPaths) -> list[Path]:
    """The build outputs a benchmark reads."""
    files = [paths.samples_labels, paths.fp32, paths.int8, paths.lite, paths.onnx_fp32, paths.onnx_int8]
    return files + ([paths.optimized] if recipe.mobile.optimize else [])


# ----------------------------------------------------------------------------------------------- variants
Runner = Callable[[Any], Any]


@dataclass
class Variant:
    id: str
    label: str
    runtime: str  # torch eager | torchscript | lite interpreter | onnxruntime
    engine: str | None  # the quantized engine set while loading and running (None: float)
    file: Path | None  # what it is loaded from (None: built in memory)
    load: Callable[[], Runner]
    onnx: bool = False
    note: str = ""
    artifact: bool = True  # the file is a build artifact (not a temp file made by the benchmark)


def variants(recipe: Recipe, paths: ArtifactPaths, threads: int, workdir: Path) -> list[Variant]:
    """Every variant of the build, in report order. Writes a temporary fp32 TorchScript file into workdir."""
    import torch
    from torch.jit.mobile import _load_for_lite_interpreter

    from vitq import models
    from vitq.onnxrt import session
    from vitq.stages.int8 import export_torchscript, quantize_dynamic

    engine = recipe.quantize.engine
    dtype = "int8" if recipe.quantize.dtype == "qint8" else "fp16"
    fp32_script = workdir / "fp32.pt"
    with torch.no_grad():
        export_torchscript(recipe, models.load_fp32(recipe, paths.fp32)).save(str(fp32_script))
    gc.collect()

    def eager_quantized(q_engine: str) -> Runner:
        torch.backends.quantized.engine = q_engine
        return _torch(quantize_dynamic(recipe, models.load_fp32(recipe, paths.fp32)))

    out = [
        Variant(FP32_EAGER, "fp32 eager", "torch eager", None, paths.fp32,
                lambda: _torch(models.load_fp32(recipe, paths.fp32))),
        Variant("fp32_torchscript", f"fp32 TorchScript ({recipe.export.method})", "torchscript", None, fp32_script,
                lambda: _torch(torch.jit.load(str(fp32_script), map_location="cpu")), artifact=False,
                note="temporary file made by the benchmark, not a build artifact"),
    ]
    for q_engine in ENGINES:
        if q_engine in torch.backends.quantized.supported_engines:
            out.append(Variant(f"int8_eager_{q_engine}", f"{dtype} eager [{q_engine}]", "torch eager", q_engine, None,
                               lambda e=q_engine: eager_quantized(e),
                               note="quantized in memory from fp32.safetensors (peak includes the fp32 model)"))
    out.append(Variant("int8_torchscript", f"{dtype} TorchScript [{engine}]", "torchscript", engine, paths.int8,
                       lambda: _torch(torch.jit.load(str(paths.int8), map_location="cpu"))))
    if recipe.mobile.optimize:
        out.append(Variant("int8_optimized", f"{dtype} optimized [{engine}]", "torchscript", engine, paths.optimized,
                           lambda: _torch(torch.jit.load(str(paths.optimized), map_location="cpu"))))
    out.append(Variant(LITE, f"{dtype} .ptl lite [{engine}]", "lite interpreter", engine, paths.lite,
                       lambda: _torch(_load_for_lite_interpreter(str(paths.lite)))))
    out.append(Variant("ort_fp32", "onnxruntime fp32", "onnxruntime", None, paths.onnx_fp32,
                       lambda: _onnx(session(paths.onnx_fp32, threads)), onnx=True))
    out.append(Variant(ORT_INT8, "onnxruntime int8", "onnxruntime", None, paths.onnx_int8,
                       lambda: _onnx(session(paths.onnx_int8, threads)), onnx=True))
    return out


def _torch(module: Any) -> Runner:
    import torch

    def run(batch: Any) -> Any:
        with torch.no_grad():
            return module(batch)

    return run


def _onnx(sess: Any) -> Runner:
    name = sess.get_inputs()[0].name

    def run(batch: Any) -> Any:
        return sess.run(None, {name: batch})[0]

    return run


# ----------------------------------------------------------------------------------------------- memory
def _rss_kb(field_name: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    found = re.search(rf"^{field_name}:\s+(\d+) kB", text, re.M)
    return int(found.group(1)) if found else None


def _current_rss() -> int:
    kb = _rss_kb("VmRSS")
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

    def start(self) -> "PeakMemory":
        self.baseline = _current_rss()
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS (Linux >= 4.0)
            if _rss_kb("VmHWM") is None:
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
            peak = (_rss_kb("VmHWM") or 0) * 1024
        return max(0.0, (peak - self.baseline) / MB)


# ----------------------------------------------------------------------------------------------- benchmark
@dataclass
class Inputs:
    torch: dict[int, Any] = field(default_factory=dict)
    numpy: dict[int, Any] = field(default_factory=dict)
    images: int = 0


def load_inputs(recipe: Recipe, paths: ArtifactPaths, batch_sizes: tuple[int, ...]) -> Inputs:
    """Real sample images, preprocessed by the recipe; repeated to fill the largest batch."""
    from vitq.preprocess import load_batch
    from vitq.samples import read_samples

    samples = read_samples(paths)
    largest = max(batch_sizes)
    unique = load_batch(recipe.preprocess, [s.path for s in samples[:largest]])
    full = unique[[i % len(unique) for i in range(largest)]].contiguous()
    inputs = Inputs(images=min(len(samples), largest))
    for b in batch_sizes:
        inputs.torch[b] = full[:b].contiguous()
        inputs.numpy[b] = inputs.torch[b].numpy().copy()
    return inputs


def run_bench(recipe: Recipe, paths: ArtifactPaths, repeats: int, warmup: int,
              batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES, threads: int | None = None,
              progress: bool = True) -> dict[str, Any]:
    """Measure every variant, write bench.json / bench.md / bench.png atomically, return the results."""
    import torch
    from tqdm import tqdm

    if repeats < 1 or warmup < 0:
        raise VitqError(f"{recipe.name}: --repeats must be >= 1 and --warmup >= 0")
    batch_sizes = tuple(sorted(set(int(b) for b in batch_sizes)))
    if not batch_sizes or batch_sizes[0] < 1:
        raise VitqError(f"{recipe.name}: batch sizes must be positive integers")
    check_built(recipe, paths)
    threads = threads or recipe.threads
    torch.set_num_threads(threads)
    inputs = load_inputs(recipe, paths, batch_sizes)
    warm = max(1, warmup)
    load_start = _loadavg()
    results = []
    with tempfile.TemporaryDirectory(prefix="vitq-bench-") as tmp:
        todo = variants(recipe, paths, threads, Path(tmp))
        steps_per_variant = len(batch_sizes) * (warm + repeats)
        bar = tqdm(total=len(todo) * steps_per_variant, desc=f"bench {recipe.name}", unit="run",
                   file=sys.stderr, disable=not progress, dynamic_ncols=True, leave=True)
        method = ""
        for variant in todo:
            bar.set_postfix_str(variant.label)
            record, method_used = _measure(variant, recipe, inputs, batch_sizes, warm, repeats, bar)
            method = method or method_used
            if record.get("error"):
                bar.write(f"  {variant.id}: FAILED: {record['error']}", file=sys.stderr)
            bar.update(len(batch_sizes) * (warm + repeats) - record.pop("_steps"))
            results.append(record)
        bar.set_postfix_str("done")
        bar.close()
    torch.backends.quantized.engine = recipe.quantize.engine
    report = _assemble(recipe, results, inputs, batch_sizes, threads, repeats, warmup, method)
    report["host"]["load_average"] = {"start": load_start, "end": _loadavg()}
    report["host"]["busy"] = _busy(report["host"])
    write_outputs(report, paths)
    return report


def check_built(recipe: Recipe, paths: ArtifactPaths) -> None:
    missing = [p.relative_to(paths.root).as_posix() for p in required_files(recipe, paths) if not p.is_file()]
    if missing:
        raise VitqError(f"{recipe.name}: no complete build in {paths.root} (missing {', '.join(missing)}); "
                        f"run `doit build:{recipe.name}` first")


def _measure(variant: Variant, recipe: Recipe, inputs: Inputs, batch_sizes: tuple[int, ...], warm: int,
             repeats: int, bar: Any) -> tuple[dict[str, Any], str]:
    import torch

    record: dict[str, Any] = {
        "id": variant.id, "label": variant.label, "runtime": variant.runtime, "engine": variant.engine,
        "file": variant.file.name if variant.file is not None else None,
        "artifact": variant.artifact if variant.file is not None else None,
        "bytes": variant.file.stat().st_size if variant.file is not None else None,
        "note": variant.note, "error": None, "_steps": 0,
    }
    feed = inputs.numpy if variant.onnx else inputs.torch
    run: Runner | None = None
    release_memory()
    torch.backends.quantized.engine = variant.engine or recipe.quantize.engine
    memory = PeakMemory().start()
    try:
        started = time.perf_counter()
        run = variant.load()
        record["load_seconds"] = round(time.perf_counter() - started, 4)
        torch.backends.quantized.engine = variant.engine or recipe.quantize.engine
        for b in batch_sizes:
            for _ in range(warm):
                run(feed[b])
                record["_steps"] += 1
                bar.update(1)
        record["peak_extra_mb"] = round(memory.stop(), 1)
        batches = {}
        for b in batch_sizes:
            batch = feed[b]
            times = []
            before = resource.getrusage(resource.RUSAGE_SELF)
            for _ in range(repeats):
                t0 = time.perf_counter()
                run(batch)
                times.append((time.perf_counter() - t0) * 1000.0)
                record["_steps"] += 1
                bar.update(1)
            after = resource.getrusage(resource.RUSAGE_SELF)
            batches[str(b)] = _stats(times)
            cpu_ms = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000.0
            batches[str(b)]["cpu_ms_per_run"] = round(cpu_ms / repeats, 3)  # all threads of this process
            batches[str(b)]["preempted_per_run"] = round((after.ru_nivcsw - before.ru_nivcsw) / repeats, 1)
        record["batches"] = batches
    except Exception as exc:  # one broken variant must not hide the others' numbers
        memory.stop()
        text = str(exc).strip().splitlines()
        record["error"] = f"{type(exc).__name__}: {text[0][:300] if text else ''}"
        record.setdefault("peak_extra_mb", None)
        record["batches"] = {}
    finally:
        del run
        release_memory()
    return record, memory.method


def _stats(times_ms: list[float]) -> dict[str, Any]:
    import numpy as np

    arr = np.asarray(times_ms, dtype=np.float64)
    return {
        "p50_ms": round(float(np.percentile(arr, 50)), 4),
        "p90_ms": round(float(np.percentile(arr, 90)), 4),
        "mean_ms": round(float(arr.mean()), 4),
        "min_ms": round(float(arr.min()), 4),
        "runs": len(times_ms),
    }


def _assemble(recipe: Recipe, results: list[dict[str, Any]], inputs: Inputs, batch_sizes: tuple[int, ...],
              threads: int, repeats: int, warmup: int, memory_method: str) -> dict[str, Any]:
    from vitq.manifest import tool_versions

    by_id = {r["id"]: r for r in results}
    fp32_bytes = by_id[FP32_EAGER]["bytes"]
    for r in results:
        r["size_ratio_vs_fp32"] = round(r["bytes"] / fp32_bytes, 4) if r["bytes"] is not None else None
        for b, stats in r["batches"].items():
            for ref_id, key in ((FP32_EAGER, "ratio_vs_fp32_eager"), (ORT_INT8, "ratio_vs_ort_int8")):
                ref = by_id.get(ref_id, {}).get("batches", {}).get(b)
                stats[key] = round(stats["p50_ms"] / ref["p50_ms"], 4) if ref and ref["p50_ms"] > 0 else None
    fastest = {}
    for b in batch_sizes:
        timed = [r for r in results if str(b) in r["batches"]]
        if timed:
            fastest[str(b)] = min(timed, key=lambda r: r["batches"][str(b)]["p50_ms"])["id"]
    crop = recipe.preprocess.crop
    return {
        "schema": SCHEMA_ID,
        "recipe": {"name": recipe.name, "version": recipe.version, "model": f"{recipe.model.source}:{recipe.model.name}",
                   "weights": recipe.weights.kind, "quantize": recipe.section("quantize")["quantize"]},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": {"cpu": cpu_model(), "machine": platform.machine(), "system": platform.system(),
                 "logical_cpus": os.cpu_count(), "affinity_cpus": _affinity()},
        "threads": threads,
        "thread_settings": "torch.set_num_threads(threads); onnxruntime intra_op_num_threads=threads, inter_op=1, sequential",
        "versions": tool_versions(),
        "repeats": repeats,
        "warmup": warmup,
        "batch_sizes": list(batch_sizes),
        "input": {"shape_per_image": [3, crop, crop], "distinct_images": inputs.images,
                  "source": "samples/ (the build's sample images, preprocessed by the recipe; repeated to fill a batch)"},
        "timing": "time.perf_counter around one forward call per run (torch under no_grad); ms per batch",
        "memory": memory_method,
        "mobile": LITE,
        "fastest": fastest,
        "variants": results,
    }


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def _loadavg() -> float | None:
    with contextlib.suppress(AttributeError, OSError):
        return round(os.getloadavg()[0], 2)
    return None


def _busy(host: dict[str, Any]) -> bool:
    """Other processes competed for the cores: 1-min load above the CPU count (this run counts for its threads)."""
    loads = [v for v in host["load_average"].values() if v is not None]
    cpus = host.get("affinity_cpus") or host.get("logical_cpus") or 1
    return bool(loads) and max(loads) > cpus + 0.5


def _affinity() -> int | None:
    with contextlib.suppress(AttributeError, OSError):
        return len(os.sched_getaffinity(0))
    return None


# ----------------------------------------------------------------------------------------------- outputs
def write_outputs(report: dict[str, Any], paths: ArtifactPaths) -> None:
    from vitq.fileio import atomic_path, write_text

    files = bench_files(paths)
    with atomic_path(files["png"]) as tmp:
        chart(report, tmp)
    write_text(files["md"], markdown(report))
    write_text(files["json"], json.dumps(report, indent=2) + "\n")


def markdown(report: dict[str, Any]) -> str:
    batches = [str(b) for b in report["batch_sizes"]]
    host, versions = report["host"], report["versions"]
    recipe = report["recipe"]
    out = [
        f"# Benchmark: {recipe['name']} {recipe['version']} ({recipe['model']}, weights: {recipe['weights']})",
        "",
        f"Host: {host['cpu']} ({host['machine']}, {host['logical_cpus']} logical CPUs); "
        f"**{report['threads']} thread(s)** for torch and onnxruntime. torch {versions.get('torch')}, "
        f"onnxruntime {versions.get('onnxruntime')}, python {versions.get('python')}.",
        "",
        f"Each variant: {max(1, report['warmup'])} warm-up run(s), then {report['repeats']} timed runs per batch "
        f"size on real sample images ({report['input']['distinct_images']} distinct, "
        f"{'x'.join(str(d) for d in report['input']['shape_per_image'])}). Times are ms per batch. "
        "Ratios are p50 time divided by the reference's p50 at the same batch size (below 1 = faster).",
        "",
    ]
    if host.get("busy"):
        out += [f"**Warning: the host was busy** (1-min load average {_loads(host)} on {host['logical_cpus']} CPUs). "
                "When other processes compete for the cores, multi-threaded torch runs wait on descheduled threads "
                "and can be several times slower than on a quiet machine (see `preempted_per_run` in bench.json). "
                + ("Re-run on a quiet machine, or with `--threads 1`." if report["threads"] > 1 else
                   "Single-threaded runs suffer least, but expect 10-30% noise; re-run on a quiet machine to be sure."),
                ""]
    header = ["variant", "engine", "file", "size", "size vs fp32"]
    for b in batches:
        header += [f"b{b} p50 ms", f"b{b} p90 ms", f"b{b} vs fp32 eager", f"b{b} vs ORT int8"]
    header += ["peak extra MB", "load s"]
    out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in report["variants"]:
        file = (f"`{r['file']}`" + ("" if r["artifact"] else " (temp)")) if r["file"] else "(in memory)"
        row = [r["label"], r["engine"] or "", file, _size(r["bytes"]), f"{r['size_ratio_vs_fp32']:.3f}x" if r["size_ratio_vs_fp32"] is not None else ""]
        for b in batches:
            s = r["batches"].get(b)
            if s is None:
                row += ["FAILED" if r["error"] else "", "", "", ""]
                continue
            row += [f"{s['p50_ms']:.2f}", f"{s['p90_ms']:.2f}", _ratio(s["ratio_vs_fp32_eager"]),
                    _ratio(s["ratio_vs_ort_int8"])]
        row += [f"{r['peak_extra_mb']:.0f}" if r.get("peak_extra_mb") is not None else "",
                f"{r['load_seconds']:.2f}" if r.get("load_seconds") is not None else ""]
        out.append("| " + " | ".join(row) + " |")
    failed = [r for r in report["variants"] if r["error"]]
    if failed:
        out += [""] + [f"- **{r['label']} failed:** {r['error']}" for r in failed]
    out += ["", "## Which artifact is which", ""] + _statement(report)
    out += ["", "## How this was measured", "",
            f"- Timing: {report['timing']}; p50/p90 by linear interpolation over the timed runs.",
            f"- Threads: {report['thread_settings']}.",
            f"- Peak extra memory: {report['memory']}, while loading the variant and running its warm-up. "
            "int8 eager variants include the fp32 model they are quantized from.",
            "- Variants run one after another in one process; each is loaded fresh and released before the next.",
            f"- Host load (1-min load average) at start and end: {_loads(host)}; bench.json also records, per "
            "variant and batch size, the process CPU time and the involuntary context switches per run.",
            "- The host is shared: repeat the run and compare before trusting differences below ~10%.",
            ""]
    return "\n".join(out)


def _statement(report: dict[str, Any]) -> list[str]:
    by_id = {r["id"]: r for r in report["variants"]}
    b = str(report["batch_sizes"][0])
    lite = by_id.get(LITE, {})
    engine = lite.get("engine") or report["recipe"]["quantize"].get("engine")
    lines = [f"- **Mobile artifact: `{lite.get('file', 'int8.ptl')}`** (PyTorch Lite interpreter, dynamic "
             f"{report['recipe']['quantize'].get('dtype')} Linear layers, {_size(lite.get('bytes'))}, "
             f"{_ratio(lite.get('size_ratio_vs_fp32'))} of fp32). It is what an Android/iOS app ships; "
             f"PyTorch Mobile runs it with the `{engine}` engine on ARM phones, and here it was run with `{engine}` too."]
    fastest_id = report["fastest"].get(b)
    if fastest_id:
        f = by_id[fastest_id]
        s = f["batches"][b]
        lines.append(f"- **Fastest on this host** ({report['host']['cpu']}, {report['threads']} thread(s), batch {b}): "
                     f"**{f['label']}** (`{f['file'] or 'in memory'}`), p50 {s['p50_ms']:.2f} ms = "
                     f"{_ratio(s['ratio_vs_fp32_eager'])} fp32 eager.")
        for other in [str(x) for x in report["batch_sizes"][1:]]:
            other_id = report["fastest"].get(other)
            if other_id and other_id != fastest_id:
                lines.append(f"  At batch {other} the fastest is {by_id[other_id]['label']}.")
    lite_s = lite.get("batches", {}).get(b)
    if engine == "qnnpack":
        why = ("- **Why they differ:** qnnpack is PyTorch's quantized kernel library for ARM CPUs (NEON kernels); on "
               "x86 it has only basic SSE2 kernels, so its int8 speed here says little about a phone. ")
        if lite_s and lite_s["ratio_vs_fp32_eager"] is not None:
            slower = lite_s["ratio_vs_fp32_eager"] > 1
            why += (f"On this host the `.ptl` takes {_ratio(lite_s['ratio_vs_fp32_eager'])} the time of fp32 eager"
                    f"{' (slower than fp32!)' if slower else ''}. ")
        x86 = by_id.get("int8_eager_x86") or by_id.get("int8_eager_fbgemm")
        x86_s = (x86 or {}).get("batches", {}).get(b)
        if x86_s:
            why += (f"The same int8 weights with the x86 engine ({x86['label']}, fbgemm/oneDNN AVX2/AVX-512 kernels) take "
                    f"{_ratio(x86_s['ratio_vs_fp32_eager'])}. ")
        why += ("Ship `int8.ptl` to phones and measure it there; on an x86 server use the x86-engine int8 or "
                "onnxruntime int8 (`int8.onnx`).")
    else:
        why = (f"- **Why they differ:** this recipe quantizes for the `{engine}` engine, an x86 kernel library; "
               "phones run quantized ops with qnnpack (ARM), so measure the `.ptl` on the target device. "
               "On this host the fastest variant is the one whose kernels suit this CPU.")
    lines.append(why)
    return lines


def chart(report: dict[str, Any], out: Path) -> None:
    """Two panels: p50 latency (whisker to p90) per variant and batch size, log scale; file size per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = report["variants"]
    labels = [r["label"] for r in results]
    batches = [str(b) for b in report["batch_sizes"]]
    n = len(results)
    fig, (lat, size) = plt.subplots(1, 2, figsize=(14, 1.6 + 0.55 * n), gridspec_kw={"width_ratios": [3, 2]})
    height = 0.8 / max(1, len(batches))
    ys = list(range(n))
    for k, b in enumerate(batches):
        offs = [y - 0.4 + height * (k + 0.5) for y in ys]
        p50 = [r["batches"][b]["p50_ms"] if b in r["batches"] else 0.0 for r in results]
        p90 = [r["batches"][b]["p90_ms"] if b in r["batches"] else 0.0 for r in results]
        err = [[0.0] * n, [max(0.0, hi - lo) for lo, hi in zip(p50, p90)]]
        bars = lat.barh(offs, p50, height=height, xerr=err, capsize=2, label=f"batch {b}")
        for bar, value, high in zip(bars, p50, p90):
            if value > 0:
                lat.text(max(value, high) * 1.03, bar.get_y() + bar.get_height() / 2, f"{value:.0f}" if value >= 100 else f"{value:.3g}", va="center", fontsize=7)
    lat.set_yticks(ys, labels)
    lat.invert_yaxis()
    if any(b in r["batches"] for r in results for b in batches):
        lat.set_xscale("log")
    lat.set_xlabel(f"ms per batch, p50 (whisker: p90), log scale, {report['threads']} thread(s)")
    lat.set_title("Latency")
    lat.legend(loc="best", fontsize=8)
    lat.grid(axis="x", which="both", alpha=0.3)
    sizes = [(r["bytes"] or 0) / 1e6 for r in results]
    bars = size.barh(ys, sizes, color=["tab:green" if r["id"] == LITE else "tab:gray" for r in results])
    for bar, r, mb in zip(bars, results, sizes):
        text = f" {mb:.3g} MB" if r["bytes"] is not None else " in memory"
        size.text(mb, bar.get_y() + bar.get_height() / 2, text, va="center", fontsize=7)
    size.set_yticks(ys, [""] * n)
    size.invert_yaxis()
    size.set_xlabel("file size, MB (green: the mobile artifact)")
    size.set_title("Size")
    size.set_xlim(0, max(sizes + [1e-9]) * 1.3)
    recipe = report["recipe"]
    fig.suptitle(f"{recipe['name']} ({recipe['model']}) on {report['host']['cpu']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, format="png", dpi=110)
    plt.close(fig)


def _loads(host: dict[str, Any]) -> str:
    load = host.get("load_average") or {}
    return " -> ".join("?" if load.get(k) is None else f"{load[k]:.2f}" for k in ("start", "end"))


def _size(n: int | None) -> str:
    return "" if n is None else human_size(n)


def _ratio(value: float | None) -> str:
    return f"{value:.2f}x" if value is not None else ""


# ----------------------------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
    parser = argparse.ArgumentParser(prog="python -m vitq.bench", description=__doc__.splitlines()[0])
    parser.add_argument("recipe_file")
    parser.add_argument("artifacts_root", type=Path)
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, help=f"timed runs per batch size (default {DEFAULT_REPEATS})")
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, help=f"untimed runs first (default {DEFAULT_WARMUP})")
    parser.add_argument("--threads", type=int, default=None, help="threads for torch and onnxruntime (default: the recipe's)")
    parser.add_argument("--batch-sizes", default=",".join(map(str, DEFAULT_BATCH_SIZES)),
                        help="comma-separated batch sizes (default 1,8)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return run_command(lambda: _bench(parser.parse_args(argv)))


def _bench(args: argparse.Namespace) -> int:
    from vitq.layout import ArtifactPaths
    from vitq.recipe import load_recipe
    from vitq.runner import configure_torch

    try:
        batch_sizes = tuple(int(b) for b in args.batch_sizes.split(",") if b.strip())
    except ValueError:
        raise VitqError(f"--batch-sizes: expected comma-separated integers, got '{args.batch_sizes}'") from None
    if args.threads is not None and args.threads < 1:
        raise VitqError("--threads must be >= 1")
    recipe = load_recipe(args.recipe_file)
    paths = ArtifactPaths.for_recipe(args.artifacts_root, recipe.name)
    check_built(recipe, paths)
    configure_torch(recipe)
    report = run_bench(recipe, paths, repeats=args.repeats, warmup=args.warmup, batch_sizes=batch_sizes,
                       threads=args.threads, progress=not args.no_progress)
    files = bench_files(paths)
    failed = [r["id"] for r in report["variants"] if r["error"]]
    print(f"  {recipe.name}:bench    {len(report['variants'])} variants x batch {','.join(map(str, batch_sizes))}, "
          f"{report['threads']} thread(s) -> {', '.join(p.name for p in files.values())}"
          + (f"  (FAILED: {', '.join(failed)})" if failed else ""), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
