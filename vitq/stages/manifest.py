"""Judge the evaluation against the recipe's gates; write manifest.json and report.md.

Both files are written even when a gate fails (the manifest then says ``passed: false``), and the
stage then fails with one line per failed check, so the build exits non-zero.
"""

from __future__ import annotations

import json
from pathlib import Path

from vitq import manifest as mf
from vitq.errors import GateError
from vitq.fileio import write_text
from vitq.gates import failures, run_checks
from vitq.recipe import Recipe
from vitq.report import markdown, table


def run(recipe: Recipe, inputs: dict[str, Path], outputs: dict[str, Path]) -> str:
    evaluation = json.loads(inputs["eval"].read_text(encoding="utf-8"))
    checks = run_checks(recipe, evaluation["metrics"])
    manifest = mf.build_manifest(recipe, inputs, outputs["manifest"].parent, evaluation, checks)
    write_text(outputs["manifest"], mf.dumps(manifest))
    write_text(outputs["report"], markdown(manifest))
    print(table(manifest), flush=True)
    failed = failures(checks)
    if failed:
        raise GateError(f"{recipe.name}: " + "; ".join(failed))
    applicable = sum(c["passed"] is not None for c in checks)
    return f"{applicable} checks passed -> {outputs['manifest'].name}, {outputs['report'].name}"
