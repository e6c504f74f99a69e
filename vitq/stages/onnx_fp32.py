"""Export the float model to ONNX (dynamo exporter), check it, and run it once in onnxruntime.

The int8 torch model cannot be exported (dynamic-quantized ops have no ONNX form), so the ONNX
int8 twin is made from this file by onnxruntime's own quantizer (stage onnx_int8).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import onnx
import torch

from vitq.errors import VitqError, first_line
from vitq.fileio import atomic_path
from vitq.model import networks
from vitq.model.attention import unfused_attention
from vitq.model.relative_paths import strip_onnx_build_paths
from vitq.model.runtimes import onnx_session
from vitq.progress import Progress
from vitq.recipe import Recipe

INPUT_NAME, OUTPUT_NAME = "pixel_values", "logits"


def run(recipe: Recipe, inputs: dict[str, Path], outputs: dict[str, Path]) -> str:
    model = networks.load_fp32(recipe, inputs["fp32"])
    example = networks.example_input(recipe).repeat(2, 1, 1, 1)  # batch 1 would be specialised away
    batch = torch.export.Dim("batch", min=1, max=4096)
    with Progress(3, unit="step") as progress, atomic_path(outputs["onnx_fp32"]) as tmp:
        progress.step("export (torch.onnx, dynamo)")
        attention = _export(model, example, batch, recipe, tmp)
        progress.step("check (onnx.checker)")
        proto = onnx.load(str(tmp))
        strip_onnx_build_paths(proto)  # the exporter records stack traces with this machine's absolute paths
        onnx.save(proto, str(tmp))
        onnx.checker.check_model(str(tmp), full_check=True)
        progress.step("run (onnxruntime)")
        diff = _smoke(model, tmp, recipe)
    return (f"torch.onnx.export(dynamo, opset {recipe.export.opset}{attention}) + onnx.checker; "
            f"onnxruntime vs torch max |dlogit| {diff:.1e}")


def _export(model: torch.nn.Module, example: torch.Tensor, batch, recipe: Recipe, file: Path) -> str:
    """Export to ``file``; where the exporter fails on the model's fused attention, export it unfused (q @ k.T,
    softmax, @ v: what opset 18 spells SDPA as anyway). The exporter takes only 4-D SDPA (NesT, Twins have 5-D), and
    cannot view the fused output's strides with a dynamic batch (MaxViT, relpos ViTs). Returns what was changed."""
    try:
        _save_onnx(model, example, batch, recipe, file)
        return ""
    except Exception as exc:
        error = first_line(exc)
        if not any(getattr(module, "fused_attn", None) is True for module in model.modules()):
            raise VitqError(f"{recipe.name}: ONNX export of {recipe.model.name} failed: {error}") from None
    try:
        _save_onnx(unfused_attention(model), example, batch, recipe, file)
    except Exception:  # the first failure is the one to report: unfusing was vitq's attempt, not the user's
        raise VitqError(f"{recipe.name}: ONNX export of {recipe.model.name} failed: {error}") from None
    return ", attention unfused"


def _save_onnx(model: torch.nn.Module, example: torch.Tensor, batch, recipe: Recipe, file: Path) -> None:
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter narrates every step
        program = torch.onnx.export(
            model, (example,), dynamo=True, opset_version=recipe.export.opset, external_data=False,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_shapes=({0: batch},),
        )
        program.save(str(file), external_data=False)


def _smoke(model: torch.nn.Module, file: Path, recipe: Recipe) -> float:
    size = recipe.preprocess.crop
    inputs = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(inputs).numpy()
    got = onnx_session(file, 1).run(None, {INPUT_NAME: inputs.numpy()})[0]
    return float(np.abs(got - expected).max())
