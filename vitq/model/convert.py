"""Torch-side conversions shared by stages, evaluation and bench: dynamic quantization and TorchScript."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path
from typing import Any

import torch

from vitq.errors import RecipeError, first_line
from vitq.model import networks
from vitq.model.relative_paths import relative_torchscript_sources, strip_torchscript_build_paths
from vitq.progress import Progress
from vitq.recipe import DTYPES as DTYPE_NAMES
from vitq.recipe import QUANTIZED_MODULES, Recipe

DTYPES = {name: getattr(torch, name) for name in DTYPE_NAMES}
MODULES = {name: getattr(torch.nn, name) for name in QUANTIZED_MODULES}
TRACE_TOLERANCE = 1e-4


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
                              f"torch.jit.script failed ({first_line(exc)}); try method: trace") from None
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


def export_executorch(recipe: Recipe, model: torch.nn.Module) -> tuple[bytes, dict[str, Any]]:
    """The model as an ExecuTorch program lowered to XNNPACK, dynamic int8 per-channel unless
    ``executorch.quantize: none``; with what the partitioner delegated (nodes per operator).

    torch.export (non-strict: transformers' forward takes keywords) -> XNNPACKQuantizer + pt2e (one
    calibration call) -> to_edge_transform_and_lower(XnnpackPartitioner) -> to_executorch. Exported for
    batch 1, as an app runs it.
    """
    _use_venv_flatc()
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.devtools.backend_debug import get_delegation_info
    from executorch.exir import to_edge_transform_and_lower

    example = (networks.example_input(recipe),)
    quantize = recipe.executorch.quantize == "dynamic_int8"
    with Progress(4 if quantize else 3, unit="step") as progress:
        try:
            progress.step("export (torch.export)")
            program = torch.export.export(model, example, strict=False)
            if quantize:
                progress.step("quantize (pt2e dynamic int8)")
                program = torch.export.export(_quantize_pt2e(program.module(), example), example, strict=False)
            progress.step("lower (XNNPACK)")
            edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
        except Exception as exc:
            raise RecipeError(recipe.path, "executorch", f"torch.export cannot export {recipe.model.name} for "
                              f"ExecuTorch ({first_line(exc)[:200]}); try executorch: {{quantize: none}}, or switch the .pte "
                              "off with executorch: {enabled: false}") from None
        info = get_delegation_info(edge.exported_program().graph_module)
        portable = {op: b.non_delegated for op, b in sorted(info.delegation_by_operator.items())
                    if b.non_delegated and op != "getitem"}  # getitem only unpacks tuples
        delegation = {
            "backend": "XnnpackBackend",
            "delegated_subgraphs": info.num_delegated_subgraphs,
            "delegated_nodes": info.num_delegated_nodes,
            "portable_nodes": info.num_non_delegated_nodes,
            "portable_operators": portable,
        }
        progress.step("serialize (to_executorch)")
        return edge.to_executorch().buffer, delegation


def _quantize_pt2e(module: torch.nn.Module, example: tuple[torch.Tensor, ...]) -> torch.nn.Module:
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=True))
    prepared = prepare_pt2e(module, quantizer)
    prepared(*example)  # dynamic quantization: one call records the graph, no calibration data needed
    return convert_pt2e(prepared)


def _use_venv_flatc() -> None:
    """The exporter runs `flatc`; the wheel ships it beside this interpreter, not always on PATH."""
    flatc = Path(sys.executable).with_name("flatc")
    if "FLATC_EXECUTABLE" not in os.environ and flatc.is_file():
        os.environ["FLATC_EXECUTABLE"] = str(flatc)
