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
