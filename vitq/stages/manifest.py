"""Judge the evaluation against the recipe's gates; write manifest.json and report.md.

Both files are written even when a gate fails (the manifest then says ``passed: false``), and the
stage then fails with one line per failed check, so the build exits non-zero.
"""

from __future__ import annotations

import json
from pathlib import Path

from vitq.check import manifest as mf
from vitq.check.build_paths import build_paths_in, machine_paths
from vitq.check.gates import build_path_check, delegation_check, failures, run_checks
from vitq.check.report import markdown, table
from vitq.errors import GateError
from vitq.fileio import write_json, write_text
from vitq.layout import SAMPLES
from vitq.model.networks import weights_uri
from vitq.recipe import Recipe
from vitq.variants import shipped


def run(recipe: Recipe, inputs: dict[str, Path], outputs: dict[str, Path]) -> str:
    evaluation = json.loads(inputs["eval"].read_text(encoding="utf-8"))
    root = outputs["manifest"].parent
    checks = [*run_checks(recipe, evaluation["metrics"]), path_gate(recipe, inputs, root)]
    if "delegation" in inputs:
        checks.append(delegation_check(recipe, json.loads(inputs["delegation"].read_text(encoding="utf-8"))))
    manifest = mf.build_manifest(recipe, inputs, root, evaluation, checks, weights_uri(recipe))
    write_json(outputs["manifest"], manifest)
    write_text(outputs["report"], markdown(manifest))
    print(table(manifest), flush=True)
    failed = failures(checks)
    if failed:
        raise GateError(f"{recipe.name}: " + "; ".join(failed))
    applicable = sum(c["passed"] is not None for c in checks)
    return f"{applicable} checks passed -> {outputs['manifest'].name}, {outputs['report'].name}"


def path_gate(recipe: Recipe, inputs: dict[str, Path], root: Path) -> dict:
    """Every file a release ships (model files, eval.json, the sample set) is searched for the artifacts root,
    checkout, venv and home of this machine."""
    forbidden = machine_paths(root.parent)
    files = [inputs[v.id] for v in shipped(recipe)] + [inputs["eval"]]
    files += sorted(p for p in inputs[SAMPLES].parent.iterdir() if p.is_file())
    found = {f.relative_to(root).as_posix(): hits for f in files if (hits := build_paths_in(f, forbidden))}
    return build_path_check(found, forbidden)
