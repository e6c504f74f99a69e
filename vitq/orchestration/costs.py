"""Build cost: the latest run of each stage from ``build-log.jsonl`` (work, start-up, peak memory), as a table.

The log (written by ``vitq.orchestration.runner``, one JSON line per stage run) lives beside the artifacts and is
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
    """Markdown: work seconds, start-up overhead and peak RSS of the latest run of each stage, plus totals."""
    runs, skipped = latest_runs(build_log)
    if not runs:
        raise InputError(build_log, "build log lists no stage runs")
    lines = ["| stage | work s | start-up s | peak RSS MB | finished (UTC) |", "|---|---:|---:|---:|---|"]
    for r in runs:
        startup = "cache hit" if r.get("cache") == "hit" else _seconds(r.get("startup_seconds"))
        lines.append(f"| {r['stage']} | {float(r['seconds']):.1f} | {startup} | {_mb(r.get('peak_rss_mb'))} "
                     f"| {r.get('finished', '')} |")
    total = sum(float(r["seconds"]) for r in runs)
    startups = [float(r["startup_seconds"]) for r in runs if isinstance(r.get("startup_seconds"), (int, float))]
    peaks = [float(r["peak_rss_mb"]) for r in runs if isinstance(r.get("peak_rss_mb"), (int, float))]
    lines.append(f"| **total** | **{total:.1f}** | {f'**{sum(startups):.1f}**' if startups else ''} | "
                 f"{f'**{max(peaks):.0f}** (max)' if peaks else ''} | |")
    notes = ["", "Latest run of each stage. Work: the stage itself; start-up: from doit asking for the stage to its "
             "work starting (a process forked from the warm stage server, or a fresh interpreter with "
             "VITQ_STAGE_PROCESS=fresh); peak RSS includes the libraries the stage process holds (torch, timm...)."]
    if skipped:
        notes.append(f"{skipped} unreadable line(s) in {Path(build_log).name} skipped.")
    return "\n".join(lines + notes) + "\n"


def _seconds(value: Any) -> str:
    return f"{float(value):.2f}" if isinstance(value, (int, float)) else ""


def _mb(value: Any) -> str:
    return f"{float(value):.0f}" if isinstance(value, (int, float)) else ""


def _build_order(record: dict[str, Any]) -> tuple[int, str]:
    from vitq.orchestration.pipeline import STAGES

    names = [s.name for s in STAGES]
    stage = record["stage"]
    return (names.index(stage), "") if stage in names else (len(names), str(stage))
