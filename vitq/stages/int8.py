"""Dynamic int8 quantization (nn.Linear weights) and TorchScript export: the first mobile artifact."""

from __future__ import annotations

from pathlib import Path

from vitq.errors import converting
from vitq.fileio import atomic_path
from vitq.model import networks
from vitq.model.convert import PTL_OFF, export_torchscript, quantize_dynamic_int8, save_torchscript
from vitq.recipe import Recipe


def run(recipe: Recipe, inputs: dict[str, Path], outputs: dict[str, Path]) -> str:
    quantized = quantize_dynamic_int8(recipe, networks.load_fp32(recipe, inputs["fp32"]))
    exported = export_torchscript(recipe, quantized)
    method = recipe.export.method
    hint = ("try export.method: trace, " if method == "script" else "") + PTL_OFF
    with atomic_path(outputs["int8"]) as tmp, converting(recipe.path, "export.method", f"saving the {method}ed module", hint):
        save_torchscript(exported, tmp)
    q = recipe.quantize
    return f"quantize_dynamic({'/'.join(q.modules)}, {q.dtype}, {q.engine}) + jit.{method}"
