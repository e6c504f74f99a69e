"""Load and run every kind of variant, the same way for evaluation, bench, verify and predict.

A runner takes a float image batch ``[N, 3, H, W]`` (torch) and returns logits ``[N, classes]`` (numpy).
Which loader a variant uses is its ``runtime`` column in the variant table.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vitq.errors import InputError, VitqError, first_line, quiet_stderr
from vitq.model import convert, networks
from vitq.model.torch_setup import set_engine
from vitq.recipe import Recipe
from vitq.variants import BY_ID, loaded_from

Runner = Callable[[torch.Tensor], np.ndarray]


def load(variant_id: str, recipe: Recipe, files: Mapping[str, Path], threads: int, engine: str | None = None) -> Runner:
    """A variant, loaded fresh from its file (or built in memory from fp32's), ready to run.

    Quantized torch variants pack their weights for the engine set while loading: the recipe's, or ``engine``.
    """
    variant = BY_ID[variant_id]
    file = Path(files[loaded_from(variant_id)])
    if variant.engine is not None:
        set_engine(recipe, engine or variant.engine_for(recipe))
    try:
        return LOADERS[variant.runtime](recipe, file, threads)
    except VitqError:
        raise
    except Exception as exc:
        raise InputError(file, f"cannot load it as {variant.format} ({first_line(exc)[:200]})") from None


def onnx_session(path: Path, threads: int) -> Any:
    """onnxruntime configured the same way everywhere: CPU, fixed threads, sequential."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise InputError(path, f"onnxruntime cannot load it: {first_line(exc)[:200]}") from None


def load_torchscript(path: Path) -> torch.jit.ScriptModule:
    return torch.jit.load(str(path), map_location="cpu")


def load_lite(path: Path) -> Any:
    from torch.jit.mobile import _load_for_lite_interpreter

    return _load_for_lite_interpreter(str(path))


def load_pte(path: Path) -> Runner:
    """An ExecuTorch program's forward method; it was exported for batch 1, so a batch runs image by image."""
    with quiet_stderr():  # the runtime logs its CPU probing on first use
        from executorch.runtime import Runtime

        program = Runtime.get().load_program(Path(path))
        method = program.load_method("forward")
    if method is None:
        raise InputError(path, "ExecuTorch program has no forward method")

    first = True  # XNNPACK probes the CPU on the first run and logs each step of it

    def run(batch: torch.Tensor) -> np.ndarray:
        nonlocal first
        with quiet_stderr() if first else contextlib.nullcontext():
            first = False
            return np.concatenate([method.execute([image[None].contiguous()])[0].float().numpy() for image in batch])

    run.program = program  # the method runs inside the program's memory: it lives as long as the runner
    return run


def torch_runner(module: Any) -> Runner:
    def run(batch: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return module(batch).float().numpy()

    return run


def onnx_runner(session: Any) -> Runner:
    name = session.get_inputs()[0].name

    def run(batch: torch.Tensor) -> np.ndarray:
        return session.run(None, {name: batch.numpy()})[0]

    return run


LOADERS: dict[str, Callable[[Any, Path, int], Runner]] = {
    "torch_eager": lambda recipe, file, threads: torch_runner(networks.load_fp32(recipe, file)),
    "torch_eager_int8": lambda recipe, file, threads: torch_runner(
        convert.quantize_dynamic_int8(recipe, networks.load_fp32(recipe, file))),
    "torchscript_memory": lambda recipe, file, threads: torch_runner(
        convert.export_torchscript(recipe, networks.load_fp32(recipe, file))),
    "torchscript": lambda recipe, file, threads: torch_runner(load_torchscript(file)),
    "lite": lambda recipe, file, threads: torch_runner(load_lite(file)),
    "onnxruntime": lambda recipe, file, threads: onnx_runner(onnx_session(file, threads)),
    "executorch": lambda recipe, file, threads: load_pte(file),
}
