"""onnxruntime dynamic int8 quantization of the ONNX export: the second, independent int8 artifact."""

from __future__ import annotations

import logging
from pathlib import Path

from onnxruntime.quantization import QuantType, quantize_dynamic

from vitq.fileio import atomic_path
from vitq.model.runtimes import onnx_session
from vitq.progress import Progress
from vitq.recipe import Recipe


def run(recipe: Recipe, inputs: dict[str, Path], outputs: dict[str, Path]) -> str:
    logging.getLogger().setLevel(logging.ERROR)  # the quantizer logs advice on every call
    with Progress(2, unit="step") as progress, atomic_path(outputs["onnx_int8"]) as tmp:
        progress.step("quantize (onnxruntime dynamic int8)")
        quantize_dynamic(str(inputs["onnx_fp32"]), str(tmp), weight_type=QuantType.QInt8)
        progress.step("load (onnxruntime)")
        onnx_session(tmp, 1)  # refuse a file onnxruntime cannot load
    return "onnxruntime.quantization.quantize_dynamic(weights QInt8)"
