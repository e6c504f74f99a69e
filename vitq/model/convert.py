"""Torch-side conversions shared by stages, evaluation and bench: dynamic quantization and TorchScript
(the ExecuTorch program is vitq.model.executorch_export's)."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from vitq.errors import RecipeError, first_line
from vitq.model import networks
from vitq.model.relative_paths import relative_torchscript_sources, strip_torchscript_build_paths
from vitq.recipe import DTYPES as DTYPE_NAMES
from vitq.recipe import QUANTIZED_MODULES, Recipe

DTYPES = {name: getattr(torch, name) for name in DTYPE_NAMES}
MODULES = {name: getattr(torch.nn, name) for name in QUANTIZED_MODULES}
TRACE_TOLERANCE = 1e-4
PTL_OFF = "or switch the .ptl chain off with mobile: {enabled: false}"  # a hint of every TorchScript error


def quantize_dynamic_int8(recipe: Recipe, model: torch.nn.Module) -> torch.nn.Module:
    """Dynamic quantization of the recipe's module types (weights int8 or float16, activations at run time)."""
    return torch.ao.quantization.quantize_dynamic(
        model, {MODULES[m] for m in recipe.quantize.modules}, dtype=DTYPES[recipe.quantize.dtype]
    )


def export_torchscript(recipe: Recipe, model: torch.nn.Module) -> torch.jit.ScriptModule:
    """Script (keeps control flow) or trace (for models TorchScript cannot compile, e.g. transformers)."""
    if recipe.export.method == "script":
        try:
            with relative_torchscript_sources():  # no build paths in the file's debug info
                return torch.jit.script(model)
        except Exception as exc:
            raise RecipeError(recipe.path, "export.method",
                              f"torch.jit.script failed ({first_line(exc)}); try method: trace, {PTL_OFF}") from None
    traced = torch.jit.trace(model, networks.example_input(recipe), check_trace=False)
    _check_trace(recipe, model, traced)
    return traced


def save_torchscript(module: torch.jit.ScriptModule, path: Path) -> None:
    """Save with no build path inside: traced modules record the absolute file of every Python frame they
    ran through, so those are made relative and the module is saved again from the rewritten archive."""
    buffer = io.BytesIO()
    torch.jit.save(module, buffer)
    relative = strip_torchscript_build_paths(buffer.getvalue())
    if relative is None:
        Path(path).write_bytes(buffer.getvalue())
        return
    torch.jit.save(torch.jit.load(io.BytesIO(relative)), str(path))


def _check_trace(recipe: Recipe, eager: torch.nn.Module, traced: torch.jit.ScriptModule) -> None:
    """Tracing records one path through the code; prove it on inputs it did not see."""
    size = recipe.preprocess.crop
    inputs = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (eager(inputs) - traced(inputs)).abs().max().item()
    if diff > TRACE_TOLERANCE:
        raise RecipeError(recipe.path, "export.method", f"traced module differs from eager by {diff:.2e} (> {TRACE_TOLERANCE})")
