"""Torch-side conversions shared by stages, evaluation and bench: dynamic quantization and TorchScript
(the ExecuTorch program is vitq.model.executorch_export's)."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import torch

from vitq.errors import RecipeError, converting, first_line, quiet_stderr
from vitq.model import networks
from vitq.model.relative_paths import relative_torchscript_sources, strip_torchscript_build_paths
from vitq.model.weight_readers import linears_read_directly
from vitq.recipe import DTYPES as DTYPE_NAMES
from vitq.recipe import QUANTIZED_MODULES, Recipe

DTYPES = {name: getattr(torch, name) for name in DTYPE_NAMES}
MODULES = {name: getattr(torch.nn, name) for name in QUANTIZED_MODULES}
TRACE_TOLERANCE = 1e-4
PTL_OFF = "or switch the .ptl chain off with mobile: {enabled: false}"  # a hint of every TorchScript error


def quantize_dynamic_int8(recipe: Recipe, model: torch.nn.Module) -> torch.nn.Module:
    """Dynamic quantization of the recipe's module types (weights int8 or float16, activations at run time)."""
    return quantize_keeping_float(recipe, model)[0]


def quantize_keeping_float(recipe: Recipe, model: torch.nn.Module) -> tuple[torch.nn.Module, list[str]]:
    """The same, and the Linears left float because the model's code reads their weight itself (a quantized
    Linear's weight is a method: vitq.model.weight_readers), by name; evaluation repeats it and gets the same."""
    types = {MODULES[m] for m in recipe.quantize.modules}
    dtype = DTYPES[recipe.quantize.dtype]
    kept = _read_directly(recipe, model) if torch.nn.Linear in types else []
    spec: set | dict = types
    if kept:
        qconfig = {torch.qint8: torch.ao.quantization.default_dynamic_qconfig,
                   torch.float16: torch.ao.quantization.float16_dynamic_qconfig}[dtype]
        spec = {**{t: qconfig for t in types}, **{name: None for name in kept}}  # a name's entry wins over its type's
    with converting(recipe.path, "quantize", "quantize_dynamic", "switch the .ptl chain off with mobile: {enabled: false}"):
        return torch.ao.quantization.quantize_dynamic(model, spec, dtype=dtype), kept


def _read_directly(recipe: Recipe, model: torch.nn.Module) -> list[str]:
    with converting(recipe.path, "model", "running the float model on an example input",
                    f"check model.kwargs and preprocess.crop ({recipe.preprocess.crop})"):
        return linears_read_directly(model, networks.example_input(recipe))


class _Refused(Exception):
    """A TorchScript method that cannot take this model; says why in one line."""


PAST = {"script": "scripted", "trace": "traced"}
TRIED = {"auto": ("script", "trace"), "script": ("script",), "trace": ("trace",)}
HINTS = {"auto": PTL_OFF.removeprefix("or "), "script": f"try method: trace, {PTL_OFF}",
         "trace": f"try method: script, {PTL_OFF}"}


def export_torchscript(recipe: Recipe, model: torch.nn.Module) -> torch.jit.ScriptModule:
    """Script (keeps control flow) or trace (for models TorchScript cannot compile, e.g. transformers); ``auto``
    scripts, and traces where scripting fails."""
    return _export(recipe, model, None)[0]


def export_and_save(recipe: Recipe, model: torch.nn.Module, path: Path) -> str:
    """Export as the recipe says and save to ``path``; the method that worked. Under ``auto`` a scripted module
    that cannot be saved (a Python call inside, as MobileViT v2's) is traced instead."""
    return _export(recipe, model, lambda module: save_torchscript(module, path))[1]


def _export(recipe: Recipe, model: torch.nn.Module,
            save: Callable[[torch.jit.ScriptModule], None] | None) -> tuple[torch.jit.ScriptModule, str]:
    explicit_same_padding(model)
    reasons = []
    for method in TRIED[recipe.export.method]:
        try:
            with quiet_stderr():  # TorchScript's warnings of a failed attempt would stand before the one line
                return _attempt(recipe, model, method, save), method
        except _Refused as refused:
            reasons.append(str(refused))
    raise RecipeError(recipe.path, "export.method", f"{', then '.join(reasons)}; {HINTS[recipe.export.method]}") from None


def _attempt(recipe: Recipe, model: torch.nn.Module, method: str,
             save: Callable[[torch.jit.ScriptModule], None] | None) -> torch.jit.ScriptModule:
    try:
        if method == "script":
            with relative_torchscript_sources():  # no build paths in the file's debug info
                module = torch.jit.script(model)
        else:
            module = torch.jit.trace(model, networks.example_input(recipe), check_trace=False)
    except Exception as exc:
        raise _Refused(f"torch.jit.{method} failed ({first_line(exc)[:200]})") from None
    if method == "trace":
        _check_trace(recipe, model, module)
    if save is not None:
        try:
            save(module)
        except Exception as exc:
            raise _Refused(f"saving the {PAST[method]} module failed ({first_line(exc)[:200]})") from None
    return module


def explicit_same_padding(model: torch.nn.Module) -> torch.nn.Module:
    """Convs with padding="same" (ConvMixer's) get the same padding as numbers where it is symmetric (stride 1,
    dilation * (kernel - 1) even): optimize_for_mobile's prepacking cannot take the string and fails on an internal
    assertion ("We don't have an op for prepacked::conv2d_clamp_prepack"). The same numbers. In place."""
    for module in model.modules():
        if isinstance(module, torch.nn.modules.conv._ConvNd) and module.padding == "same" \
                and all(s == 1 for s in module.stride) \
                and all(d * (k - 1) % 2 == 0 for d, k in zip(module.dilation, module.kernel_size, strict=True)):
            module.padding = tuple(d * (k - 1) // 2 for d, k in zip(module.dilation, module.kernel_size, strict=True))
    return model


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
    try:
        with torch.no_grad():
            diff = (eager(inputs) - traced(inputs)).abs().max().item()
    except Exception as exc:
        raise _Refused(f"the traced module does not run on a batch of 2 ({first_line(exc)[:200]})") from None
    if diff > TRACE_TOLERANCE:
        raise _Refused(f"traced module differs from eager by {diff:.2e} (> {TRACE_TOLERANCE})")
