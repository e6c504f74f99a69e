"""Torch-side conversions shared by stages, evaluation and bench: dynamic quantization and TorchScript."""

from __future__ import annotations

from typing import Any

import torch

from vitq import models
from vitq.errors import RecipeError

DTYPES = {"qint8": torch.qint8, "float16": torch.float16}
MODULES = {"Linear": torch.nn.Linear}
TRACE_TOLERANCE = 1e-4


def quantize_dynamic_int8(recipe: Any, model: torch.nn.Module) -> torch.nn.Module:
    """Dynamic quantization of the recipe's module types (weights int8 or float16, activations at run time)."""
    return torch.ao.quantization.quantize_dynamic(
        model, {MODULES[m] for m in recipe.quantize.modules}, dtype=DTYPES[recipe.quantize.dtype]
    )


def export_torchscript(recipe: Any, model: torch.nn.Module) -> torch.jit.ScriptModule:
    """Script (keeps control flow) or trace (for models TorchScript cannot compile, e.g. transformers)."""
    if recipe.export.method == "script":
        try:
            return torch.jit.script(model)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RecipeError(recipe.path, "export.method", f"torch.jit.script failed ({first}); try method: trace") from None
    traced = torch.jit.trace(model, models.example_input(recipe), check_trace=False)
    _check_trace(recipe, model, traced)
    return traced


def _check_trace(recipe: Any, eager: torch.nn.Module, traced: torch.jit.ScriptModule) -> None:
    """Tracing records one path through the code; prove it on inputs it did not see."""
    size = recipe.preprocess.crop
    inputs = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (eager(inputs) - traced(inputs)).abs().max().item()
    if diff > TRACE_TOLERANCE:
        raise RecipeError(recipe.path, "export.method", f"traced module differs from eager by {diff:.2e} (> {TRACE_TOLERANCE})")
