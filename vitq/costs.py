"""Build cost: the latest run of each stage from ``build-log.jsonl``, as a markdown table.

The log (written by ``vitq.runner``, one JSON line per stage run) lives beside the artifacts and is
not part of the manifest, which must stay reproducible. Cheap to import: no torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vitq.errors import InputError


def latest_runs(build_log: Path) -> tuple[list[dict[str, Any]], int]:
    """The last logged run of every stage, in build order, and how many lines could not be read.

    A line cut short by a killed process is skipped (and counted), not fatal.
    """
    build_log = Path(build_log)
    try:
        text = build_log.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(build_log, "build log not found; build the recipe first (doit build:<recipe>)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(build_log, f"cannot read the build log ({exc.__class__.__name__})") from None
    latest: dict[str, dict[str, Any]] = {}
    skipped = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            stage = record["stage"]
            float(record["seconds"])
        except (ValueError, KeyError, TypeError):
            skipped += 1
            continue
        latest.pop(stage, None)  # re-insert: a stage's position is that of its latest run
        latest[stage] = record
    return sorted(latest.values(), key=_build_order), skipped


def format_costs(build_log: Path) -> str:
    """Markdown: seconds and peak RSS of the latest run of each stage, plus the total."""
    runs, skipped = latest_runs(build_log)
    if not runs:
        raise InputError(build_log, "build log lists no stage runs")
    lines = ["| stage | seconds | peak RSS MB | finished (UTC) |", "|---|---:|---:|---|"]
    for r in runs:
        lines.append(f"| {r['stage']} | {float(r['seconds']):.1f} | {_mb(r.get('peak_rss_mb'))} | {r.get('finished', '')} |")
    total = sum(float(r["seconds"]) for r in runs)
    peaks = [float(r["peak_rss_mb"]) for r in runs if isinstance(r.get("peak_rss_mb"), (int, float))]
    lines.append(f"| **total** | **{total:.1f}** | **{max(peaks):.0f}** (max) | |" if peaks else
                 f"| **total** | **{total:.1f}** | | |")
    notes = ["", "Latest run of each stage; every stage runs in its own process, so peak RSS includes "
             "the interpreter and the libraries the stage imports (torch, timm...)."]
    if skipped:
        notes.append(f"{skipped} unreadable line(s) in {Path(build_log).name} skipped.")
    return "\n".join(lines + notes) + "\n"


def _mb(value: Any) -> str:
    return f"{float(value):.0f}" if isinstance(value, (int, float)) else ""


def _build_order(record: dict[str, Any]) -> tuple[int, str]:
    from vitq.pipeline import STAGES

    names = [s.name for s in STAGES]
    stage = record["stage"]
    return (names.index(stage), "") if stage in names else (len(names), str(stage))
