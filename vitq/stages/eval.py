"""Evaluate every variant on the sample images -> eval.json (metrics only; the manifest judges them)."""

from __future__ import annotations

import json

from vitq.evaluate import evaluate
from vitq.fileio import write_text
from vitq.layout import ArtifactPaths
from vitq.recipe import Recipe


def run(recipe: Recipe, paths: ArtifactPaths) -> str:
    result = evaluate(recipe, paths)
    write_text(paths.eval, json.dumps({"schema": "vitq.eval/1", **result}, indent=2, sort_keys=True) + "\n")
    m = result["metrics"]
    return (f"{len(m)} variants x {result['n']} images: fp32 top-1 {m['fp32']['top1']:.1%}, "
            f"lite top-1 {m['lite']['top1']:.1%} (agreement {m['lite']['agreement']:.1%})")
