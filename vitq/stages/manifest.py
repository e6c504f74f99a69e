"""Judge the evaluation against the recipe's gates; write manifest.json and report.md.

Both files are written even when a gate fails (the manifest then says ``passed: false``), and the
stage then fails with one line per failed check, so the build exits non-zero.
"""

from __future__ import annotations

import json
from pathlib import Path

from vitq.check import manifest as mf
from vitq.check.build_paths import build_paths_in, machine_paths
from vitq.check.gates import build_path_check, choose_candidate, delegation_check, failures, run_checks
from vitq.check.report import markdown, table
from vitq.errors import GateError
from vitq.fileio import write_json, write_text
from vitq.layout import SAMPLES
from vitq.model.networks import weights_uri
from vitq.recipe import Recipe
from vitq.variants import pte_candidates, shipped


def run(recipe: Recipe, inputs: dict[str, Path], outputs: dict[str, Path]) -> str:
    evaluation = json.loads(inputs["eval"].read_text(encoding="utf-8"))
    root = outputs["manifest"].parent
    checks = [*run_checks(recipe, evaluation["metrics"]), path_gate(recipe, inputs, root)]
    candidates = [v.id for v in pte_candidates(recipe)]
    for variant in candidates:
        delegation = json.loads(inputs[f"delegation:{variant}"].read_text(encoding="utf-8"))
        checks.append(delegation_check(recipe, delegation, variant))
    chosen, records = choose_candidate(candidates, checks)
    judged = [c for c in checks if c["name"].split(".")[0] not in candidates or chosen is None
              or c["name"].split(".")[0] == chosen]  # the checks of the candidate that ships, or of all when none does
    choice = (chosen, records) if len(candidates) > 1 else (None, [])  # one strategy: as before candidates existed
    manifest = mf.build_manifest(recipe, inputs, root, evaluation, judged, weights_uri(recipe), choice)
    write_json(outputs["manifest"], manifest)
    write_text(outputs["report"], markdown(manifest))
    print(table(manifest), flush=True)
    failed = failures([c for c in judged if c["name"].split(".")[0] not in candidates or len(candidates) == 1])
    if failed:
        raise GateError(f"{recipe.name}: " + "; ".join(failed))
    if chosen is None and len(candidates) > 1:  # one line per candidate
        raise GateError("\n".join([f"{recipe.name}: no .pte candidate passes its gates (manifest written, passed: "
                                    "false)"] + [f"{recipe.name}: candidate {r['variant']} {r['why']}" for r in records]))
    applicable = sum(c["passed"] is not None for c in judged)
    ships = f", ships {chosen} of {len(candidates)} .pte candidates" if len(candidates) > 1 else ""
    return f"{applicable} checks passed{ships} -> {outputs['manifest'].name}, {outputs['report'].name}"


def path_gate(recipe: Recipe, inputs: dict[str, Path], root: Path) -> dict:
    """Every file a release ships (model files, eval.json, the sample set) is searched for the artifacts root,
    checkout, venv and home of this machine."""
    forbidden = machine_paths(root.parent)
    files = [inputs[v.id] for v in shipped(recipe)] + [inputs["eval"]]  # every candidate: any may ship
    files += sorted(p for p in inputs[SAMPLES].parent.iterdir() if p.is_file())
    found = {f.relative_to(root).as_posix(): hits for f in files if (hits := build_paths_in(f, forbidden))}
    return build_path_check(found, forbidden)
