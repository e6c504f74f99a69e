"""onnxruntime dynamic int8 quantization of the ONNX export: the second, independent int8 artifact."""

from __future__ import annotations

import logging

from onnxruntime.quantization import QuantType, quantize_dynamic

from vitq.fileio import atomic_path
from vitq.layout import ArtifactPaths
from vitq.onnxrt import session
from vitq.recipe import Recipe


def run(recipe: Recipe, paths: ArtifactPaths) -> str:
    logging.getLogger().setLevel(logging.ERROR)  # the quantizer logs advice on every call
    with atomic_path(paths.onnx_int8) as tmp:
        quantize_dynamic(str(paths.onnx_fp32), str(tmp), weight_type=QuantType.QInt8)
        session(tmp, recipe.threads)  # refuse a file onnxruntime cannot load
    return "onnxruntime.quantization.quantize_dynamic(weights QInt8)"
