"""Run every variant of a build on its sample images and measure it against the float reference.

Used by the eval stage and by ``vitq verify``, so a verification re-runs exactly what the build ran.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vitq.errors import RecipeError
from vitq.model import runtimes
from vitq.model.preprocess import load_batch
from vitq.model.samples import Sample, read_samples
from vitq.numerics import recorded_error
from vitq.progress import Progress
from vitq.recipe import Recipe
from vitq.variants import REFERENCE, variants_for

# One image at a time, as on a phone. Dynamic int8 quantizes activations with a scale computed over
# the whole input tensor, so batching images together would change each image's result.
BATCH = 1
# One thread: images go through one at a time, and qnnpack's thread pool at batch 1 on 2 threads
# was measured 190x slower (74.6 s vs 0.4 s for 360 digits) on this 2-core host.
EVAL_THREADS = 1


def evaluate(recipe: Recipe, files: Mapping[str, Path], labels: Path) -> dict[str, Any]:
    """Metrics of every variant: top-1/top-5 against labels, agreement and logit error against fp32.

    ``files`` maps variant ids to their files (at least fp32's); ``labels`` is the sample set's labels.csv. A variant
    whose file is not given is left out: a release holds only the ExecuTorch candidate that shipped.
    """
    torch.set_num_threads(EVAL_THREADS)
    samples = read_samples(labels)
    batches = [load_batch(recipe.preprocess, [s.path for s in samples[i : i + BATCH]])
               for i in range(0, len(samples), BATCH)]
    logits = {}
    variants = [v for v in variants_for(recipe) if v.file is None or v.id in files]
    with Progress(len(variants) * len(samples), unit="images") as progress:  # prefix: the stage's, or verify's
        for i, variant in enumerate(variants, 1):  # one at a time: peak memory is one model, not all of them
            progress.set_postfix_str(f"variant {i}/{len(variants)}: {variant.id}")
            run = runtimes.load(variant.id, recipe, files, EVAL_THREADS)
            outputs = []
            for batch in batches:
                outputs.append(run(batch))
                progress.update(len(batch))
            logits[variant.id] = np.concatenate(outputs).astype(np.float32)
            del run
            if variant.id == REFERENCE:  # the first row: before any other variant is run
                check_labels(recipe, labels, samples, logits[REFERENCE].shape[1])
    classes = logits[REFERENCE].shape[1]
    reference = logits[REFERENCE]
    metrics = {name: _metrics(out, reference, samples) for name, out in logits.items()}
    # the scale float32 rounding grows with: the ONNX fp32 tolerance's relative part (vitq.check.gates)
    metrics[REFERENCE]["max_abs_logit"] = recorded_error(float(np.abs(reference).max()))
    return {"n": len(samples), "classes": int(classes), "metrics": metrics}


def check_labels(recipe: Recipe, labels: Path, samples: list[Sample], classes: int) -> None:
    """The sample labels must name classes the model has: the user's labels file, or the recipe's built-in set
    (photos are ImageNet-1k classes, a 10-class model cannot be scored on them)."""
    if recipe.samples.builtin is None:
        read_samples(labels, num_classes=classes, shown_as=Path(recipe.samples.labels))
        return
    highest = max(max(s.accepted) for s in samples)
    if highest >= classes:
        raise RecipeError(recipe.path, "samples", f"the {recipe.samples.builtin} samples are labelled with classes up "
                          f"to {highest}, but {recipe.model.name} has {classes} outputs; use samples: {{dir: folder, "
                          "labels: file} with your own images")


def _metrics(out: np.ndarray, reference: np.ndarray, samples: list[Sample]) -> dict[str, Any]:
    top1 = out.argmax(1)
    top5 = np.argsort(-out, axis=1, kind="stable")[:, :5]
    diff = np.abs(out.astype(np.float64) - reference.astype(np.float64))
    return {
        "top1": _fraction(sum(int(p) in s.accepted for p, s in zip(top1, samples, strict=True)), len(samples)),
        "top5": _fraction(sum(bool(set(t.tolist()) & set(s.accepted)) for t, s in zip(top5, samples, strict=True)), len(samples))
        if out.shape[1] >= 5 else None,
        "agreement": _fraction(int((top1 == reference.argmax(1)).sum()), len(samples)),
        "max_abs_logit_diff": recorded_error(diff.max()),  # upper bounds at 2 significant digits (vitq.numerics)
        "mean_abs_logit_diff": recorded_error(diff.mean()),
        "n": len(samples),
    }


def _fraction(count: int, n: int) -> float:
    return round(count / n, 6)
