"""Top-5 class names for images, from any built variant: .safetensors, .pt, .ptl or .onnx.

The artifact's folder must hold the build's manifest.json: it says how to preprocess and, for the
float weights, which architecture to build; class names come from the fp32 artifact's metadata.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vitq import manifest as mf
from vitq.errors import InputError
from vitq.layout import ArtifactPaths
from vitq.labels import read_class_names
from vitq.preprocess import load_batch

SUFFIXES = (".safetensors", ".pt", ".ptl", ".onnx")


def predict(artifact: Path, images: list[Path], top: int = 5) -> list[tuple[Path, list[tuple[int, str, float]]]]:
    """Per image: (class index, name, probability) for the ``top`` best classes."""
    from vitq.runner import configure_torch
    from vitq.verify import recipe_from_manifest

    artifact = Path(artifact)
    if not artifact.is_file():
        raise InputError(artifact, "artifact not found")
    if artifact.suffix not in SUFFIXES:
        raise InputError(artifact, f"unsupported artifact type; expected one of {', '.join(SUFFIXES)}")
    paths = ArtifactPaths(artifact.parent.absolute())
    if not paths.manifest.is_file():
        raise InputError(artifact, f"needs the build's {paths.manifest.name} beside it (doit build:<recipe>)")
    recipe = recipe_from_manifest(mf.load(paths.manifest), paths.root)
    configure_torch(recipe)
    run = _runner(recipe, artifact)
    logits = run(load_batch(recipe.preprocess, list(images)))
    names = read_class_names(paths.fp32) if paths.fp32.is_file() else None
    probs = _softmax(logits)
    results = []
    for image, row in zip(images, probs):
        best = np.argsort(-row, kind="stable")[:top]
        results.append((image, [(int(i), names[i] if names else f"class {i}", float(row[i])) for i in best]))
    return results


def _runner(recipe: Any, artifact: Path):
    import torch

    from vitq.evaluate import _onnx, _torch
    from vitq.onnxrt import session

    if artifact.suffix == ".onnx":
        return _onnx(session(artifact, recipe.threads))
    if artifact.suffix == ".ptl":
        from torch.jit.mobile import _load_for_lite_interpreter

        return _torch(_load_for_lite_interpreter(str(artifact)))
    if artifact.suffix == ".pt":
        try:
            return _torch(torch.jit.load(str(artifact), map_location="cpu"))
        except RuntimeError as exc:
            raise InputError(artifact, f"not a TorchScript file ({str(exc).splitlines()[0][:100]})") from None
    from vitq.models import load_fp32

    return _torch(load_fp32(recipe, artifact))


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)
