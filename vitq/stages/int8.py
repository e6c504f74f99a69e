"""Dynamic int8 quantization (nn.Linear weights) and TorchScript export: the first mobile artifact."""

from __future__ import annotations

import torch

from vitq import models
from vitq.errors import RecipeError
from vitq.fileio import atomic_path
from vitq.layout import ArtifactPaths
from vitq.recipe import Recipe

DTYPES = {"qint8": torch.qint8, "float16": torch.float16}
MODULES = {"Linear": torch.nn.Linear}


def run(recipe: Recipe, paths: ArtifactPaths) -> str:
    model = models.load_fp32(recipe, paths.fp32)
    quantized = quantize_dynamic(recipe, model)
    exported = export_torchscript(recipe, quantized)
    with atomic_path(paths.int8) as tmp:
        exported.save(str(tmp))
    return f"quantize_dynamic({'/'.join(recipe.quantize.modules)}, {recipe.quantize.dtype}, {recipe.quantize.engine}) + jit.{recipe.export.method}"


def quantize_dynamic(recipe: Recipe, model: torch.nn.Module) -> torch.nn.Module:
    return torch.ao.quantization.quantize_dynamic(
        model, {MODULES[m] for m in recipe.quantize.modules}, dtype=DTYPES[recipe.quantize.dtype]
    )


def export_torchscript(recipe: Recipe, model: torch.nn.Module) -> torch.jit.ScriptModule:
    """Script (keeps control flow) or trace (for models TorchScript cannot compile, e.g. transformers)."""
    if recipe.export.method == "script":
        try:
            return torch.jit.script(model)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RecipeError(recipe.path, "export.method", f"torch.jit.script failed ({first}); try method: trace") from None
    example = models.example_input(recipe)
    traced = torch.jit.trace(model, example, check_trace=False)
    _check_trace(recipe, model, traced)
    return traced


def _check_trace(recipe: Recipe, eager: torch.nn.Module, traced: torch.jit.ScriptModule) -> None:
    """Tracing records one path through the code; prove it on inputs it did not see."""
    size = recipe.preprocess.crop
    inputs = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (eager(inputs) - traced(inputs)).abs().max().item()
    if diff > 1e-4:
        raise RecipeError(recipe.path, "export.method", f"traced module differs from eager by {diff:.2e} (> 1e-4)")
