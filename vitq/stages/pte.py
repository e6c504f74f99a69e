"""The ExecuTorch program (.pte, XNNPACK, dynamic int8 per-channel): export it, then load it back in ExecuTorch's
runtime and run it on a real sample image before the stage is done (the eval stage scores it on all of them).

Also writes what XNNPACK took and what stayed on portable kernels, for the manifest.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vitq.errors import VitqError, converting
from vitq.fileio import atomic_path, write_json
from vitq.layout import SAMPLES
from vitq.model import networks
from vitq.model.executorch_export import PTE_OFF, export_executorch
from vitq.model.preprocess import load_batch
from vitq.model.runtimes import load_pte
from vitq.model.samples import read_samples
from vitq.recipe import Recipe

TOLERANCE = 0.1  # of the largest |logit|: dynamic int8 vs float, on one image; eval measures the real error


def run(recipe: Recipe, inputs: dict[str, Path], outputs: dict[str, Path]) -> str:
    model = networks.load_fp32(recipe, inputs["fp32"])
    program, delegation = export_executorch(recipe, model)
    sample = read_samples(inputs[SAMPLES])[0].path
    with atomic_path(outputs["pte"]) as tmp:
        tmp.write_bytes(program)
        diff = _check(recipe, model, tmp, sample)
    write_json(outputs["delegation"], delegation)
    total = delegation["delegated_nodes"] + delegation["portable_nodes"]
    return (f"{recipe.executorch.quantize} -> {outputs['pte'].name} ({len(program) / 1e6:.2f} MB), XNNPACK took "
            f"{delegation['delegated_nodes']}/{total} graph nodes; ran in ExecuTorch on {sample.name}: "
            f"max |dlogit| vs fp32 {diff:.1e}")


def _check(recipe: Recipe, model: torch.nn.Module, pte_file: Path, image: Path) -> float:
    """Run the freshly written program on one preprocessed image, as an app would; refuse one that is far off."""
    batch = load_batch(recipe.preprocess, [image])
    with converting(recipe.path, "executorch", "running the program in ExecuTorch's runtime", PTE_OFF.removeprefix("or ")):
        got = load_pte(pte_file)(batch)  # XNNPACK can lower what its runtime then refuses to run
    with torch.no_grad():
        expected = model(batch).numpy()
    diff = float(np.abs(got - expected).max()) if got.shape == expected.shape else float("inf")
    if not diff <= TOLERANCE * max(1e-6, float(np.abs(expected).max())):
        raise VitqError(f"{pte_file.name}: ExecuTorch output on {image.name} differs from {recipe.name}'s fp32 "
                        f"model by {diff:.2e}")
    return diff
