"""bench.png: two panels, latency per variant and batch size, and file size per variant."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def chart(report: dict[str, Any], out: Path) -> None:
    """p50 latency (whisker to p90) per variant and batch size, log scale; file size per variant (the mobile
    artifact in green). Writes a PNG to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(report["variants"])
    fig, (lat, size) = plt.subplots(1, 2, figsize=(14, 1.6 + 0.55 * n), gridspec_kw={"width_ratios": [3, 2]})
    _latency_panel(lat, report)
    _size_panel(size, report)
    recipe = report["recipe"]
    fig.suptitle(f"{recipe['name']} ({recipe['model']}) on {report['host']['cpu']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, format="png", dpi=110)
    plt.close(fig)


def _latency_panel(ax: Any, report: dict[str, Any]) -> None:
    results = report["variants"]
    batches = [str(b) for b in report["batch_sizes"]]
    n = len(results)
    height = 0.8 / max(1, len(batches))
    ys = list(range(n))
    for k, b in enumerate(batches):
        offs = [y - 0.4 + height * (k + 0.5) for y in ys]
        p50 = [r["batches"][b]["p50_ms"] if b in r["batches"] else 0.0 for r in results]
        p90 = [r["batches"][b]["p90_ms"] if b in r["batches"] else 0.0 for r in results]
        err = [[0.0] * n, [max(0.0, hi - lo) for lo, hi in zip(p50, p90, strict=True)]]
        bars = ax.barh(offs, p50, height=height, xerr=err, capsize=2, label=f"batch {b}")
        for bar, value, high in zip(bars, p50, p90, strict=True):
            if value > 0:
                ax.text(max(value, high) * 1.03, bar.get_y() + bar.get_height() / 2,
                        f"{value:.0f}" if value >= 100 else f"{value:.3g}", va="center", fontsize=7)
    ax.set_yticks(ys, [r["label"] for r in results])
    ax.invert_yaxis()
    if any(b in r["batches"] for r in results for b in batches):
        ax.set_xscale("log")
    ax.set_xlabel(f"ms per batch, p50 (whisker: p90), log scale, {report['threads']} thread(s)")
    ax.set_title("Latency")
    ax.legend(loc="best", fontsize=8)
    ax.grid(axis="x", which="both", alpha=0.3)


def _size_panel(ax: Any, report: dict[str, Any]) -> None:
    results = report["variants"]
    ys = list(range(len(results)))
    sizes = [(r["bytes"] or 0) / 1e6 for r in results]
    bars = ax.barh(ys, sizes, color=["tab:green" if r["id"] == report["mobile"] else "tab:gray" for r in results])
    for bar, r, mb in zip(bars, results, sizes, strict=True):
        text = f" {mb:.3g} MB" if r["bytes"] is not None else " in memory"
        ax.text(mb, bar.get_y() + bar.get_height() / 2, text, va="center", fontsize=7)
    ax.set_yticks(ys, [""] * len(results))
    ax.invert_yaxis()
    ax.set_xlabel("file size, MB (green: the mobile artifact)")
    ax.set_title("Size")
    ax.set_xlim(0, max(sizes + [1e-9]) * 1.3)


def candidates_chart(report: dict[str, Any], candidates: list[dict[str, Any]], out: Path) -> None:
    """candidates.png, beside bench.png: each ExecuTorch candidate's size against its top-1 agreement with fp32
    (the shipped one in green, those that missed a gate hollow), and its b1 latency. Writes a PNG to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = {r["variant"]: r for r in report["variants"] if r["id"] == r["variant"]}
    fig, (trade, latency) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    for c in candidates:
        color = "tab:green" if c["shipped"] else "tab:gray"
        if c["agreement"] is None:  # a failed candidate: no program, nothing to place
            continue
        trade.scatter(c["bytes"] / 1e6, 100 * c["agreement"], s=80, color=color if c["passed"] else "none",
                      edgecolors=color, linewidths=2)
        trade.annotate(f" {c['strategy']} ({c['size_ratio_vs_fp32']:.2f}x, top-1 {c['top1']:.1%})",
                       (c["bytes"] / 1e6, 100 * c["agreement"]), fontsize=8, va="center")
    trade.set_xlabel("file size, MB")
    trade.set_ylabel("top-1 agreement with fp32, % of samples")
    trade.set_title("Size against accuracy (green: shipped; hollow: missed a gate)")
    trade.grid(alpha=0.3)
    trade.margins(x=0.3, y=0.2)  # room for the labels
    names = [c["strategy"] for c in candidates]
    p50 = [measured.get(c["variant"], {}).get("batches", {}).get("1", {}).get("p50_ms", 0.0) for c in candidates]
    bars = latency.barh(range(len(names)), p50, color=["tab:green" if c["shipped"] else "tab:gray" for c in candidates])
    for bar, value, c in zip(bars, p50, candidates, strict=True):
        text = " failed (no program)" if c["agreement"] is None else f" {value:.3g} ms" if value else " not timed"
        latency.text(value, bar.get_y() + bar.get_height() / 2, text,
                     va="center", fontsize=8)
    latency.set_yticks(range(len(names)), names)
    latency.invert_yaxis()
    latency.set_xlabel(f"ms at batch 1, p50, {report['threads']} thread(s)")
    latency.set_title("Latency")
    latency.set_xlim(0, max(p50 + [1e-9]) * 1.4)
    fig.suptitle(f"{report['recipe']['name']}: ExecuTorch candidates on {report['host']['cpu']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, format="png", dpi=110)
    plt.close(fig)
