"""Where ``vitq verify --arch arm64`` writes what it found: ``arm64.json`` beside the build (beside a release tarball,
``<release>.arm64.json``), and a section of the build's report.md.

The record stays out of the release tarball: it holds wall-clock seconds and the emulator's build, and a release
must be cut (and rebuilt byte for byte) without a multi-GB emulated runtime. So ``vitq release`` packs report.md
without this section (``without_section``), and the release workflow publishes the record beside the tarball.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from vitq.fileio import write_json, write_text

FILE = "arm64.json"
BEGIN = "<!-- vitq verify --arch arm64 -->"
END = "<!-- /vitq verify --arch arm64 -->"


def record_path(target: Path) -> Path:
    """arm64.json in a build folder (or beside its manifest.json); ``<name>.arm64.json`` beside a tarball."""
    target = Path(target)
    if target.is_dir():
        return target / FILE
    if target.name.endswith((".tar.gz", ".tgz", ".tar")):
        stem = re.sub(r"\.(tar\.gz|tgz|tar)$", "", target.name)
        return target.with_name(f"{stem}.{FILE}")
    return target.parent / FILE


def write(target: Path, record: dict[str, Any]) -> Path:
    """The record, and in a build folder its section of report.md (replacing an earlier one)."""
    path = record_path(target)
    write_json(path, record)
    report = path.parent / "report.md"
    if path.name == FILE and report.is_file():
        write_text(report, without_section(report.read_text(encoding="utf-8")) + "\n" + section(record))
    return path


def without_section(text: str) -> str:
    """report.md as the build wrote it, byte for byte: the section (always last) removed."""
    return text.split("\n" + BEGIN, 1)[0]


def section(record: dict[str, Any]) -> str:
    """The record for a person: in which runtimes and on which CPUs each file was verified, and how it did."""
    emulator = record.get("emulator") or {}
    lines = [BEGIN, "## Verified on ARM (emulated)", "",
             f"Every shipped mobile file run on {record['images']} sample images"
             f"{' (the first ' + str(record['limit']) + ')' if record.get('limit') else ''} in the aarch64 builds of its "
             f"runtimes under {emulator.get('version', 'no emulator')}, one CPU model per XNNPACK kernel family, "
             f"compared with fp32 and with the same file on x86-64 ({record['host']}). "
             f"Verdict: **{'pass' if record['passed'] else 'FAIL'}**.", "",
             "| file | runtime | CPU | kernel family | top-1 | agrees with fp32 | agrees with x86 | max \\|Δlogit\\| vs x86 "
             "| |", "|---|---|---|---|---|---|---|---|---|"]
    for run in record["runs"]:
        where = f"{run['arch']} {run['cpu']}"
        if "failed" in run:
            lines.append(f"| all | {run['runtime']} | {where} | {run.get('family') or ''} | | | | | did not start |")
            continue
        if not run["known_answer"]["passed"]:
            lines.append(f"| all | {run['runtime']} | {where} | {run.get('family') or ''} | | | | | "
                         "emulator failed its known-answer check |")
            continue
        for name, f in run["files"].items():
            if "error" in f:
                lines.append(f"| {name} | {run['runtime']} | {where} | {run.get('family') or ''} | | | | | does not run |")
                continue
            versus = (f"{f['agreement_x86']:.1%} | {f['max_abs_logit_diff_x86']:.2g}" if "agreement_x86" in f
                      else "(the reference) | ")
            lines.append(f"| {name} | {run['runtime']} | {where} | {run.get('family') or 'x86-64 host'} | "
                         f"{f['top1']:.1%} | {f['agreement_fp32']:.1%} | {versus} | "
                         f"{'pass' if f['passed'] else 'FAIL'} |")
    for problem in record.get("problems", []):
        lines.append(f"\n- {problem}")
    return "\n".join([*lines, "", END]) + "\n"
