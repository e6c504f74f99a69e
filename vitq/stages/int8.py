"""Dynamic int8 quantization (nn.Linear weights) and TorchScript export: the first mobile artifact.

Also writes how it was made (the method ``auto`` chose, the Linears kept float), for the manifest."""

from __future__ import annotations

from pathlib import Path

from vitq.fileio import atomic_path, write_json
from vitq.layout import TORCHSCRIPT_RECORD
from vitq.model import networks
from vitq.model.convert import export_and_save, quantize_keeping_float
from vitq.recipe import Recipe


def run(recipe: Recipe, inputs: dict[str, Path], outputs: dict[str, Path]) -> str:
    quantized, kept = quantize_keeping_float(recipe, networks.load_fp32(recipe, inputs["fp32"]))
    with atomic_path(outputs["int8"]) as tmp:
        method = export_and_save(recipe, quantized, tmp)
    write_json(outputs[TORCHSCRIPT_RECORD], {"method_asked": recipe.export.method, "method": method,
                                             "keep_float": kept})
    q = recipe.quantize
    float_note = f", {len(kept)} Linear(s) kept float (the model's code reads their weight)" if kept else ""
    return f"quantize_dynamic({'/'.join(q.modules)}, {q.dtype}, {q.engine}) + jit.{method}{float_note}"
