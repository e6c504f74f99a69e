"""Top-5 class names for images, from any built variant's file (the variant table says how to load it).

The artifact's folder must hold the build's manifest.json: it says how to preprocess and, for the
float weights, which architecture to build; class names come from the fp32 artifact's metadata.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vitq.check import manifest as mf
from vitq.errors import InputError
from vitq.layout import lowered
from vitq.model.labels import read_class_names
from vitq.model.preprocess import load_batch
from vitq.variants import REFERENCE, VARIANTS, for_file


def predict(artifact: Path, images: list[Path], top: int = 5) -> list[tuple[Path, list[tuple[int, str, float]]]]:
    """Per image: (class index, name, probability) for the ``top`` best classes."""
    from vitq.model import runtimes
    from vitq.model.torch_setup import configure_torch

    artifact = Path(artifact)
    if not artifact.is_file():
        raise InputError(artifact, "artifact not found")
    variant = for_file(artifact.name)
    if variant is None:
        names = ", ".join(v.file for v in VARIANTS if v.file)
        raise InputError(artifact, f"not a vitq artifact; expected one of {names}")
    if variant.format == "executorch" and not lowered(artifact):
        raise InputError(artifact, "holds no program: this ExecuTorch candidate failed (it did not lower, did "
                                   "not run, or was off fp32: manifest.json's candidates say which)")
    manifest_path = artifact.parent / "manifest.json"
    if not manifest_path.is_file():
        raise InputError(artifact, f"needs the build's {manifest_path.name} beside it (doit build:<recipe>)")
    manifest = mf.load(manifest_path)
    recipe = mf.recipe_from_manifest(manifest, artifact.parent.absolute())
    configure_torch(recipe)
    files = {**mf.artifact_files(manifest, artifact.parent), variant.id: artifact}
    run = runtimes.load(variant.id, recipe, files, recipe.threads)
    logits = run(load_batch(recipe.preprocess, list(images)))
    fp32 = files.get(REFERENCE)
    names = read_class_names(fp32) if fp32 is not None and fp32.is_file() else None
    probs = _softmax(logits)
    results = []
    for image, row in zip(images, probs, strict=True):
        best = np.argsort(-row, kind="stable")[:top]
        results.append((image, [(int(i), names[i] if names else f"class {i}", float(row[i])) for i in best]))
    return results


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)
