"""One ExecuTorch candidate (.pte, XNNPACK, quantized per one of ``executorch.quantize``'s strategies): export it,
then load it back in ExecuTorch's runtime and run it on a real sample image before the stage is done (the eval
stage scores it on all of them, the manifest stage picks the candidate that ships).

Mixed precision: where the recipe declares calibration images, the weights are not random (agreement would mean
nothing, as the accuracy gates say) and the program's top-1 agrees with fp32's on fewer of them than
``checks.min_agreement``, the layers whose quantized output is furthest from fp32 (lowest SQNR,
``pte_quantization.layer_sensitivity``) are kept in float, 1, 2, 4... up to ``executorch.max_float_layers``, until it
agrees. Calibration images only: the samples judge the result, they must not choose it.

Also writes what XNNPACK took, what stayed on portable kernels and how the program was quantized, for the manifest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from vitq.errors import RecipeError, converting
from vitq.fileio import atomic_path, write_json
from vitq.layout import CALIBRATION, SAMPLES
from vitq.model import networks
from vitq.model.executorch_export import OFF_FROM_FP32, PTE_OFF, export_executorch
from vitq.model.preprocess import load_batch
from vitq.model.runtimes import load_pte
from vitq.model.samples import read_samples
from vitq.recipe import Recipe
from vitq.variants import BY_ID

TOLERANCE = OFF_FROM_FP32  # of the largest |logit|: quantized vs float, on one image; eval measures the real error


def run(recipe: Recipe, inputs: dict[str, Path], outputs: dict[str, Path]) -> str:
    variant_id = next(key for key in outputs if key in BY_ID)
    strategy = BY_ID[variant_id].strategy
    model = networks.load_fp32(recipe, inputs["fp32"])
    calibration = calibration_batch(recipe, inputs[CALIBRATION]) if CALIBRATION in inputs else None
    sample = read_samples(inputs[SAMPLES])[0].path
    failed = None
    with atomic_path(outputs[variant_id]) as tmp:
        try:
            delegation, quantization = _build(recipe, model, strategy, calibration, tmp,
                                              load_batch(recipe.preprocess, [sample]))
            diff = _check(recipe, model, strategy, tmp, sample)
        except RecipeError as exc:
            if recipe.lone_pte_candidate:
                raise
            tmp.write_bytes(b"")  # no program (vitq.layout.lowered): the other candidates decide
            failed = exc.problem
    if failed is not None:
        write_json(outputs[f"delegation:{variant_id}"], {
            "failed": failed, "delegated_nodes": 0, "portable_nodes": 0, "portable_operators": {},
            "quantization": {"strategy": strategy, "keep_float": []}})
        return f"{strategy} -> {outputs[variant_id].name} left empty, this candidate failed: {failed}"
    size = outputs[variant_id].stat().st_size
    write_json(outputs[f"delegation:{variant_id}"], {**delegation, "quantization": quantization})
    total = delegation["delegated_nodes"] + delegation["portable_nodes"]
    kept = quantization["keep_float"]
    return (f"{strategy} -> {outputs[variant_id].name} ({size / 1e6:.2f} MB)"
            f"{f', {len(kept)} layers kept in float' if kept else ''}, XNNPACK took "
            f"{delegation['delegated_nodes']}/{total} graph nodes; ran in ExecuTorch on {sample.name}: "
            f"max |dlogit| vs fp32 {diff:.1e}")


def calibration_batch(recipe: Recipe, listing: Path) -> torch.Tensor:
    """The calibration images (the calibration stage wrote them), preprocessed as the recipe says."""
    names = listing.read_text(encoding="utf-8").split()
    return load_batch(recipe.preprocess, [listing.parent / name for name in names])


def _build(recipe: Recipe, model: torch.nn.Module, strategy: str, calibration: torch.Tensor | None,
           target: Path, image: torch.Tensor) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write the candidate's program to ``target``, with layers kept in float while it disagrees with fp32 on the
    calibration images (and the bound allows); its delegation record and how it was quantized. ``image``: the
    sample the program is tried on while it is made (export_executorch)."""
    program, delegation = export_executorch(recipe, model, strategy, calibration, image=image)
    target.write_bytes(program)
    quantization: dict[str, Any] = {"strategy": strategy, "keep_float": []}
    if "float_convs" in delegation:  # convs left float so that XNNPACK runs the program (pte_quantization)
        quantization["float_convs"] = delegation.pop("float_convs")
    if strategy == "8da4w":
        quantization["group_size"] = recipe.executorch.group_size
    if calibration is None or strategy == "none" or not recipe.accuracy_meaningful:  # as the gates: no agreement
        return delegation, quantization  # to reach on random weights
    agreement = _agreement(model, target, calibration)
    bound = recipe.executorch.max_float_layers
    if agreement < recipe.checks.min_agreement and bound:
        for kept in _keep_float_steps(recipe, model, strategy, calibration, bound):
            program, delegation = export_executorch(recipe, model, strategy, calibration, keep_float=kept, image=image)
            target.write_bytes(program)
            agreement, quantization["keep_float"] = _agreement(model, target, calibration), list(kept)
            if agreement >= recipe.checks.min_agreement:
                break
    quantization["calibration_agreement"] = round(agreement, 6)
    return delegation, quantization


def _keep_float_steps(recipe: Recipe, model: torch.nn.Module, strategy: str, calibration: torch.Tensor,
                      bound: int) -> list[tuple[str, ...]]:
    """The layers to keep in float on each retry: the 1, 2, 4... most sensitive, ending at ``bound``."""
    from vitq.model.pte_quantization import layer_sensitivity
    from vitq.model.xnnpack_rewrites import prepare_for_xnnpack

    sqnr = layer_sensitivity(prepare_for_xnnpack(model), [calibration], strategy, recipe.executorch.group_size)
    ranked = sorted(sqnr, key=lambda name: (sqnr[name], name))
    counts = sorted({min(2 ** i, bound, len(ranked)) for i in range(bound.bit_length() + 1)})
    return [tuple(ranked[:count]) for count in counts if count]


def _agreement(model: torch.nn.Module, program: Path, images: torch.Tensor) -> float:
    """The fraction of images on which the program's top-1 class is fp32's."""
    got = load_pte(program)(images).argmax(axis=1)
    with torch.no_grad():
        expected = model(images).argmax(dim=1).numpy()
    return float((got == expected).mean())


def _check(recipe: Recipe, model: torch.nn.Module, strategy: str, pte_file: Path, image: Path) -> float:
    """Run the freshly written program on one preprocessed image, as an app would; refuse one that is far off."""
    batch = load_batch(recipe.preprocess, [image])
    with converting(recipe.path, "executorch", "running the program in ExecuTorch's runtime", PTE_OFF.removeprefix("or ")):
        got = load_pte(pte_file)(batch)  # XNNPACK can lower what its runtime then refuses to run
    with torch.no_grad():
        expected = model(batch).numpy()
    diff = float(np.abs(got - expected).max()) if got.shape == expected.shape else float("inf")
    # Among candidates with trained weights the gates judge it on every sample (and another may ship); alone, or
    # on random weights (no gate can judge), this one image is all that stands between an off program and a release.
    judged_by_gates = not recipe.lone_pte_candidate and recipe.accuracy_meaningful
    bound = TOLERANCE * max(1e-6, float(np.abs(expected).max()))
    if not judged_by_gates and not diff <= bound:
        raise RecipeError(recipe.path, "executorch.quantize", f"the {strategy} program {pte_file.name} is off: on "
                          f"{image.name} its logits differ from the fp32 model's by {diff:.2e} (more than "
                          f"{TOLERANCE:.0%} of the largest, {bound:.2e}); try executorch: {{quantize: none}}, {PTE_OFF}")
    return diff
