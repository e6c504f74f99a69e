"""Run every variant of a build on its sample images and measure it against the float reference.

Used by the eval stage and by ``vitq verify``, so a verification re-runs exactly what the build ran.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from vitq import models
from vitq.layout import ArtifactPaths
from vitq.onnxrt import session
from vitq.preprocess import load_batch
from vitq.recipe import Recipe
from vitq.samples import Sample, read_samples
from vitq.variants import REFERENCE

# One image at a time, as on a phone. Dynamic int8 quantizes activations with a scale computed over
# the whole input tensor, so batching images together would change each image's result.
BATCH = 1
EVAL_THREADS = 1

Runner = Callable[[torch.Tensor], np.ndarray]


def variant_runners(recipe: Recipe, paths: ArtifactPaths) -> dict[str, Runner]:
    """Each variant as a function: float image batch -> logits (numpy). Loads every file fresh."""
    from torch.jit.mobile import _load_for_lite_interpreter

    from vitq.stages.int8 import quantize_dynamic

    fp32 = models.load_fp32(recipe, paths.fp32)
    int8_eager = quantize_dynamic(recipe, models.load_fp32(recipe, paths.fp32))
    runners: dict[str, Runner] = {"fp32": _torch(fp32), "int8_eager": _torch(int8_eager)}
    runners["int8"] = _torch(torch.jit.load(str(paths.int8), map_location="cpu"))
    if recipe.mobile.optimize:
        runners["optimized"] = _torch(torch.jit.load(str(paths.optimized), map_location="cpu"))
    runners["lite"] = _torch(_load_for_lite_interpreter(str(paths.lite)))
    for name, file in (("onnx_fp32", paths.onnx_fp32), ("onnx_int8", paths.onnx_int8)):
        runners[name] = _onnx(session(file, EVAL_THREADS))
    return runners


def evaluate(recipe: Recipe, paths: ArtifactPaths) -> dict[str, Any]:
    """Metrics of every variant: top-1/top-5 against labels, agreement and logit error against fp32."""
    # One thread: images go through one at a time, and qnnpack's thread pool at batch 1 on 2 threads
    # was measured 190x slower (74.6 s vs 0.4 s for 360 digits) on this 2-core host.
    torch.set_num_threads(EVAL_THREADS)
    runners = variant_runners(recipe, paths)
    samples = read_samples(paths)
    logits = {name: _logits(run, recipe, samples) for name, run in runners.items()}
    classes = logits[REFERENCE].shape[1]
    user_labels = Path(recipe.samples.labels) if recipe.samples.labels else None
    read_samples(paths, num_classes=classes, shown_as=user_labels)  # labels must name classes the model has
    reference = logits[REFERENCE]
    metrics = {name: _metrics(out, reference, samples) for name, out in logits.items()}
    return {"n": len(samples), "classes": int(classes), "metrics": metrics}


def _metrics(out: np.ndarray, reference: np.ndarray, samples: list[Sample]) -> dict[str, Any]:
    top1 = out.argmax(1)
    top5 = np.argsort(-out, axis=1, kind="stable")[:, :5]
    diff = np.abs(out.astype(np.float64) - reference.astype(np.float64))
    return {
        "top1": _fraction(sum(int(p) in s.accepted for p, s in zip(top1, samples)), len(samples)),
        "top5": _fraction(sum(bool(set(t.tolist()) & set(s.accepted)) for t, s in zip(top5, samples)), len(samples))
        if out.shape[1] >= 5 else None,
        "agreement": _fraction(int((top1 == reference.argmax(1)).sum()), len(samples)),
        "max_abs_logit_diff": float(f"{diff.max():.6g}"),
        "mean_abs_logit_diff": float(f"{diff.mean():.6g}"),
        "n": len(samples),
    }


def _fraction(count: int, n: int) -> float:
    return round(count / n, 6)


def _logits(run: Runner, recipe: Recipe, samples: list[Sample]) -> np.ndarray:
    parts = []
    for start in range(0, len(samples), BATCH):
        batch = load_batch(recipe.preprocess, [s.path for s in samples[start : start + BATCH]])
        parts.append(run(batch))
    return np.concatenate(parts).astype(np.float32)


def _torch(module: Any) -> Runner:
    def run(batch: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return module(batch).float().numpy()

    return run


def _onnx(sess: Any) -> Runner:
    name = sess.get_inputs()[0].name

    def run(batch: torch.Tensor) -> np.ndarray:
        return sess.run(None, {name: batch.numpy()})[0]

    return run
