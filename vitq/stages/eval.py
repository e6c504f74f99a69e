"""Evaluate every variant on the sample images -> eval.json (metrics only; the manifest judges them)."""

from __future__ import annotations

from pathlib import Path

from vitq.check.evaluate import evaluate
from vitq.fileio import write_json
from vitq.layout import SAMPLES, failed_candidates
from vitq.recipe import Recipe
from vitq.variants import REFERENCE, mobile_variant


def run(recipe: Recipe, inputs: dict[str, Path], outputs: dict[str, Path]) -> str:
    failed = failed_candidates(inputs)  # no program to evaluate
    models = {key: path for key, path in inputs.items() if key != SAMPLES and key not in failed}
    result = evaluate(recipe, models, inputs[SAMPLES])
    write_json(outputs["eval"], {"schema": "vitq.eval/1", **result})
    m = result["metrics"]
    app = mobile_variant(m)
    return (f"{len(m)} variants x {result['n']} images: {REFERENCE} top-1 {m[REFERENCE]['top1']:.1%}, "
            f"{app} top-1 {m[app]['top1']:.1%} (agreement {m[app]['agreement']:.1%})")
