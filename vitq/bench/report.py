"""bench.md: the table of every measurement, which artifact is for which target, and how it was measured.

Works on the report dict alone (``vitq.bench.measure.run_bench`` or a parsed bench.json): no torch.
"""

from __future__ import annotations

from typing import Any

from vitq.bench.measure import CROSS_CHECK, RATIO_TO
from vitq.check.report import human_size
from vitq.variants import REFERENCE

VS_FP32, VS_CROSS_CHECK = RATIO_TO[REFERENCE], RATIO_TO[CROSS_CHECK]
X86_ENGINES = ("x86", "fbgemm")  # quantized kernels written for x86 CPUs (oneDNN / fbgemm)


def markdown(report: dict[str, Any]) -> str:
    out = _intro(report) + _busy_warning(report) + _table(report)
    failed = [r for r in report["variants"] if r["error"]]
    if failed:
        out += [""] + [f"- **{r['label']} failed:** {r['error']}" for r in failed]
    out += ["", "## Which artifact is which", ""] + statement(report)
    out += ["", "## How this was measured", ""] + _method(report)
    return "\n".join(out)


def _intro(report: dict[str, Any]) -> list[str]:
    host, versions, recipe = report["host"], report["versions"], report["recipe"]
    return [
        f"# Benchmark: {recipe['name']} {recipe['version']} ({recipe['model']}, weights: {recipe['weights']})",
        "",
        f"Host: {host['cpu']} ({host['machine']}, {host['logical_cpus']} logical CPUs); "
        f"**{report['threads']} thread(s)** for torch and onnxruntime. torch {versions.get('torch')}, "
        f"onnxruntime {versions.get('onnxruntime')}, python {versions.get('python')}.",
        "",
        f"Each variant: {max(1, report['warmup'])} warm-up run(s), then {report['repeats']} timed runs per batch "
        f"size on real sample images ({report['input']['distinct_images']} distinct, "
        f"{'x'.join(str(d) for d in report['input']['shape_per_image'])}). Times are ms per batch. "
        f"Ratios are p50 time divided by the p50 of `{REFERENCE}` or `{CROSS_CHECK}` at the same batch size "
        "(below 1 = faster).",
        "",
    ]


def _busy_warning(report: dict[str, Any]) -> list[str]:
    host = report["host"]
    if not host.get("busy"):
        return []
    advice = ("Re-run on a quiet machine, or with `--threads 1`." if report["threads"] > 1 else
              "Single-threaded runs suffer least, but expect 10-30% noise; re-run on a quiet machine to be sure.")
    return [f"**Warning: the host was busy** (1-min load average {_loads(host)} on {host['logical_cpus']} CPUs). "
            "When other processes compete for the cores, multi-threaded torch runs wait on descheduled threads "
            "and can be several times slower than on a quiet machine (see `preempted_per_run` in bench.json). "
            + advice, ""]


def _table(report: dict[str, Any]) -> list[str]:
    batches = [str(b) for b in report["batch_sizes"]]
    header = ["variant", "engine", "file", "size", "size vs fp32"]
    for b in batches:
        header += [f"b{b} p50 ms", f"b{b} p90 ms", f"b{b} vs {REFERENCE}", f"b{b} vs {CROSS_CHECK}"]
    header += ["peak extra MB", "load s"]
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in report["variants"]:
        ratio = r["size_ratio_vs_fp32"]
        row = [r["label"], r["engine"] or "", f"`{r['file']}`" if r["file"] else "(in memory)", _size(r["bytes"]),
               f"{ratio:.3f}x" if ratio is not None else ""]
        for b in batches:
            s = r["batches"].get(b)
            if s is None:
                row += ["FAILED" if r["error"] else "", "", "", ""]
            else:
                row += [f"{s['p50_ms']:.2f}", f"{s['p90_ms']:.2f}", _ratio(s[VS_FP32]), _ratio(s[VS_CROSS_CHECK])]
        row += [f"{r['peak_extra_mb']:.0f}" if r.get("peak_extra_mb") is not None else "",
                f"{r['load_seconds']:.2f}" if r.get("load_seconds") is not None else ""]
        out.append("| " + " | ".join(row) + " |")
    return out


def statement(report: dict[str, Any]) -> list[str]:
    """Which artifact is for which target, and why the numbers on this host differ from a phone's."""
    by_id = {r["id"]: r for r in report["variants"]}
    b = str(report["batch_sizes"][0])
    lite = by_id.get(report["mobile"], {})
    reference = by_id.get(REFERENCE, {}).get("label", REFERENCE)
    quantize = report["recipe"]["quantize"]
    engine = lite.get("engine") or quantize.get("engine")
    lines = [f"- **Mobile artifact: `{lite.get('file')}`** (PyTorch Lite interpreter, dynamic "
             f"{quantize.get('dtype')} Linear layers, {_size(lite.get('bytes'))}, "
             f"{_ratio(lite.get('size_ratio_vs_fp32'))} of fp32). It is what an Android/iOS app ships; "
             f"PyTorch Mobile runs it with the `{engine}` engine on ARM phones, and here it was run with `{engine}` too."]
    fastest_id = report["fastest"].get(b)
    if fastest_id:
        f = by_id[fastest_id]
        s = f["batches"][b]
        lines.append(f"- **Fastest on this host** ({report['host']['cpu']}, {report['threads']} thread(s), batch {b}): "
                     f"**{f['label']}** (`{f['file'] or 'in memory'}`), p50 {s['p50_ms']:.2f} ms = "
                     f"{_ratio(s[VS_FP32])} {reference}.")
        for other in [str(x) for x in report["batch_sizes"][1:]]:
            other_id = report["fastest"].get(other)
            if other_id and other_id != fastest_id:
                lines.append(f"  At batch {other} the fastest is {by_id[other_id]['label']}.")
    lines.append(_why_they_differ(report, lite, engine, reference, b))
    return lines


def _why_they_differ(report: dict[str, Any], lite: dict[str, Any], engine: str | None, reference: str, b: str) -> str:
    if engine != "qnnpack":
        return (f"- **Why they differ:** this recipe quantizes for the `{engine}` engine, an x86 kernel library; "
                "phones run quantized ops with qnnpack (ARM), so measure the `.ptl` on the target device. "
                "On this host the fastest variant is the one whose kernels suit this CPU.")
    why = ("- **Why they differ:** qnnpack is PyTorch's quantized kernel library for ARM CPUs (NEON kernels); on "
           "x86 it has only basic SSE2 kernels, so its int8 speed here says little about a phone. ")
    lite_s = lite.get("batches", {}).get(b)
    if lite_s and lite_s[VS_FP32] is not None:
        slower = lite_s[VS_FP32] > 1
        why += (f"On this host the `.ptl` takes {_ratio(lite_s[VS_FP32])} the time of {reference}"
                f"{' (slower than fp32!)' if slower else ''}. ")
    x86 = next((r for r in report["variants"] if r["engine"] in X86_ENGINES and b in r["batches"]), None)
    if x86:
        why += (f"The same int8 weights with the x86 engine ({x86['label']}, fbgemm/oneDNN AVX2/AVX-512 kernels) take "
                f"{_ratio(x86['batches'][b][VS_FP32])}. ")
    cross = next((r for r in report["variants"] if r["id"] == CROSS_CHECK), {})
    return why + (f"Ship `{lite.get('file')}` to phones and measure it there; on an x86 server "
                  f"use the x86-engine int8 or onnxruntime int8 (`{cross.get('file')}`).")


def _method(report: dict[str, Any]) -> list[str]:
    return [
        f"- Timing: {report['timing']}; p50/p90 by linear interpolation over the timed runs.",
        f"- Threads: {report['thread_settings']}.",
        f"- Peak extra memory: {report['memory']}, while loading the variant and running its warm-up. "
        "Variants made in memory (file column: in memory) include the fp32 model they are made from.",
        "- Variants run one after another in one process; each is loaded fresh and released before the next.",
        f"- Host load (1-min load average) at start and end: {_loads(report['host'])}; bench.json also records, per "
        "variant and batch size, the process CPU time and the involuntary context switches per run.",
        "- The host is shared: repeat the run and compare before trusting differences below ~10%.",
        "",
    ]


def _loads(host: dict[str, Any]) -> str:
    load = host.get("load_average") or {}
    return " -> ".join("?" if load.get(k) is None else f"{load[k]:.2f}" for k in ("start", "end"))


def _size(n: int | None) -> str:
    return "" if n is None else human_size(n)


def _ratio(value: float | None) -> str:
    return f"{value:.2f}x" if value is not None else ""
