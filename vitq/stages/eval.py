"""Evaluate every variant on the sample images -> eval.json (metrics only; the manifest judges them)."""

from __future__ import annotations

from pathlib import Path

from vitq.check.evaluate import evaluate
from vitq.fileio import write_json
from vitq.layout import SAMPLES
from vitq.recipe import Recipe
from vitq.variants import MOBILE, REFERENCE


def run(recipe: Recipe, inputs: dict[str, Path], outputs: dict[str, Path]) -> str:
    models = {key: path for key, path in inputs.items() if key != SAMPLES}
    result = evaluate(recipe, models, inputs[SAMPLES])
    write_json(outputs["eval"], {"schema": "vitq.eval/1", **result})
    m = result["metrics"]
    return (f"{len(m)} variants x {result['n']} images: {REFERENCE} top-1 {m[REFERENCE]['top1']:.1%}, "
            f"{MOBILE} top-1 {m[MOBILE]['top1']:.1%} (agreement {m[MOBILE]['agreement']:.1%})")
