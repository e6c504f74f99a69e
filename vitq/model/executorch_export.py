"""The ExecuTorch program: the model exported with torch.export, quantized with pt2e, lowered to XNNPACK, and a
record of what XNNPACK took, what it left on portable kernels and the partitioner's reason for each.

Before export the model is rewritten so that XNNPACK takes the whole graph (vitq.model.xnnpack_rewrites); the
rewrites apply to this export only, so the TorchScript and ONNX files keep their bytes.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import os
import re
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch

from vitq.errors import converting, first_line, quiet_stderr
from vitq.model import networks
from vitq.progress import Progress
from vitq.recipe import Recipe

PARTITIONER_LOGGER = "executorch.backends.xnnpack"
PTE_OFF = "or switch the .pte off with executorch: {enabled: false}"
TUPLE_UNPACKING = "getitem"  # unpacks a delegate's outputs: no compute, not counted as portable


def export_executorch(recipe: Recipe, model: torch.nn.Module, strategy: str, calibration: torch.Tensor | None = None,
                      keep_float: tuple[str, ...] = (), image: torch.Tensor | None = None) -> tuple[bytes, dict[str, Any]]:
    """The model as an ExecuTorch program lowered to XNNPACK, quantized per ``strategy`` (one of the recipe's
    candidates, vitq.model.pte_quantization; ``calibration``: image batch for static_int8; ``keep_float``: layers
    left in float; ``image``: a preprocessed batch of one the program is tried on, a seeded random one if None);
    with what the partitioner delegated (nodes per operator, and why any stayed out).

    xnnpack rewrites -> torch.export (non-strict: transformers' forward takes keywords) and quantization ->
    to_edge_transform_and_lower(edge passes, XnnpackPartitioner) -> to_executorch. Exported for batch 1, as an app
    runs it.
    """
    use_venv_flatc()
    from vitq.model.pte_quantization import FLOAT_CONVS, float_conv_counts
    from vitq.model.xnnpack_rewrites import prepare_for_xnnpack

    example = (networks.example_input(recipe),)
    pte_off = f"try executorch: {{quantize: none}}, {PTE_OFF}"
    with (Progress(3, unit="step") as progress, quiet_stderr(),  # a failure's fake-tensor log
          converting(recipe.path, "executorch", f"exporting {recipe.model.name} for ExecuTorch", pte_off)):
        prepared = prepare_for_xnnpack(model)
        # not the example: zeros, on which a broken program may still look right
        trial = image if image is not None else torch.randn(example[0].shape, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            expected = prepared(trial)
        lower = functools.partial(_lower, prepared, example, (trial, expected), strategy,
                                  recipe.executorch.group_size, calibration, keep_float)
        if strategy not in DYNAMIC_STRATEGIES:
            return lower(FLOAT_CONVS[0], progress)[:2]
        # the dynamic strategies' convs: ExecuTorch 1.3.1 mishandles some (pte_quantization.FLOAT_CONVS), refusing
        # the program, crashing on it or computing something else, so more of them stay float, rule by rule, while
        # that leaves more float than the rule before. A program that is only off is kept if no rule does better:
        # the pte stage's check on a real image then says how far off it is.
        first: Exception | str
        kept: tuple[bytes, dict[str, Any]] | None = None
        try:
            program, delegation, off = lower(FLOAT_CONVS[0], progress)
            if off is None:
                return program, delegation
            first, kept = off, (program, delegation)
        except Exception as failure:
            first = failure
        counts = float_conv_counts(prepared, example)
        for before, rule in itertools.pairwise(FLOAT_CONVS):
            if counts[rule] > counts[before]:
                with contextlib.suppress(Exception):
                    program, delegation, off = lower(rule, None)
                    if off is None:
                        why = first if isinstance(first, str) else first_line(first)
                        return program, {**delegation, "float_convs": {
                            "rule": rule, "convs": counts[rule], "why": f"with fewer: {why[:200]}"}}
        if kept is not None:
            return kept
        raise first


DYNAMIC_STRATEGIES = ("dynamic_int8", "8da4w")  # activations quantized at run time: their convs may stay float


def _lower(model: torch.nn.Module, example: tuple, trial: tuple[torch.Tensor, torch.Tensor], strategy: str,
           group_size: int, calibration: torch.Tensor | None, keep_float: tuple[str, ...], float_convs: str,
           progress: Progress | None) -> tuple[bytes, dict[str, Any], str | None]:
    """Quantize, lower and serialize ``model`` (rewritten for XNNPACK) for ``example``, then run the program once on
    ``trial``'s input; with how far its logits are from the model's (``trial``'s second) where that is more than
    OFF_FROM_FP32, else None."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    from vitq.model.pte_quantization import quantize_for_xnnpack
    from vitq.model.xnnpack_rewrites import edge_passes

    step = progress.step if progress is not None else lambda _text: None
    step(f"export and quantize (torch.export, {strategy})")
    program = quantize_for_xnnpack(model, example, strategy, group_size=group_size, calibration=calibration,
                                   keep_float=keep_float, float_convs=float_convs)
    step("lower (XNNPACK)")
    with partitioner_reasons() as reasons:
        edge = to_edge_transform_and_lower(program, transform_passes=edge_passes(program),
                                          partitioner=[XnnpackPartitioner()])
    delegation = delegation_record(edge.exported_program().graph_module, reasons)
    step("serialize (to_executorch)")
    program = edge.to_executorch().buffer
    inputs, expected = trial
    got = run_lowered_once(program, (inputs,))[0]  # XNNPACK 1.3.1 lowers programs its runtime then refuses
    diff, scale = float((got - expected).abs().max()), float(expected.abs().max())
    off = (f"the lowered program's logits differ from the model's by {diff:.3g} on the trial image (largest "
           f"|logit| {scale:.3g})") if diff > OFF_FROM_FP32 * max(scale, 1e-6) else None
    return program, delegation, off


OFF_FROM_FP32 = 0.1  # of the largest |logit|: a quantized program further off computes something else



class LoweredProgramFails(RuntimeError):
    """The lowered program does not run in ExecuTorch's runtime (XNNPACK refuses it at its first execute)."""


def run_lowered_once(program: bytes, example: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    """Run the serialized program once on the example in ExecuTorch's runtime, as an app would, in a process of its
    own (vitq.model.pte_trial: the runtime may crash on a program it mishandles); its outputs. Raise
    LoweredProgramFails with the runtime's own cause (the first error line it logs, e.g. XNNPACK 1.3.1's
    "Propagating input shapes failed with code: xnn_status_invalid_parameter" for dynamically quantized
    EfficientViT and TinyViT), or the signal that ended it, when it does not run: lowering succeeds there, only
    execute() fails, and the exception itself says only "method->execute() failed with error 0x1"."""
    import signal
    import subprocess
    import tempfile

    import numpy as np

    import vitq

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "program.pte"
        path.write_bytes(program)
        inputs = []
        for index, tensor in enumerate(example):
            inputs.append(str(Path(folder) / f"input{index}.npy"))
            np.save(inputs[-1], tensor.detach().contiguous().numpy())
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(Path(vitq.__file__).resolve().parents[1]), *filter(None, [os.environ.get("PYTHONPATH")])])}
        trial = subprocess.run([sys.executable, "-m", "vitq.model.pte_trial", str(path), folder, *inputs],
                               env=env, capture_output=True, text=True)
        if trial.returncode < 0:
            cause = f"the runtime crashed ({signal.Signals(-trial.returncode).name}) in its first execute()"
            raise LoweredProgramFails(f"the lowered program does not run in ExecuTorch: {cause}")
        if trial.returncode:
            causes = [line.strip() for line in trial.stderr.splitlines() if "Error" in line or "failed" in line]
            cause = causes[0] if causes else (trial.stderr.strip().splitlines() or ["no cause given"])[-1]
            raise LoweredProgramFails(f"the lowered program does not run in ExecuTorch: {cause}")
        count = len(list(Path(folder).glob("[0-9]*.npy")))
        return [torch.from_numpy(np.load(Path(folder) / f"{index}.npy")) for index in range(count)]


def delegation_record(graph_module: torch.fx.GraphModule, reasons: dict[str, str]) -> dict[str, Any]:
    """What XNNPACK took (nodes, subgraphs) and each operator left on portable kernels, with the reason."""
    from executorch.devtools.backend_debug import get_delegation_info

    info = get_delegation_info(graph_module)
    portable = {op: b.non_delegated for op, b in sorted(info.delegation_by_operator.items())
                if b.non_delegated and op != TUPLE_UNPACKING}
    unsupported = f"the XNNPACK partitioner of executorch {version('executorch')} has no rule for this operator"
    return {
        "backend": "XnnpackBackend",
        "delegated_subgraphs": info.num_delegated_subgraphs,
        "delegated_nodes": info.num_delegated_nodes,
        "portable_nodes": sum(portable.values()),
        "portable_operators": portable,
        "portable_reasons": {op: reasons.get(op, unsupported) for op in portable},
    }


@contextlib.contextmanager
def partitioner_reasons() -> Iterator[dict[str, str]]:
    """Why XNNPACK's partitioner refused each operator it has a rule for (its WhyNoPartition debug records, by
    operator as get_delegation_info names them), collected quietly: nothing reaches the console."""
    from executorch.exir.backend.utils import WhyNoPartition

    reasons: dict[str, str] = {}

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            why = record.msg
            if isinstance(why, WhyNoPartition) and why.node is not None:
                reasons.setdefault(operator_name(why.node.name), why.reason)

    logger = logging.getLogger(PARTITIONER_LOGGER)
    saved = logger.level, logger.propagate
    handler = Collect(logging.DEBUG)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield reasons
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def operator_name(node_name: str) -> str:
    """``aten_expand_copy_default_3`` -> ``aten_expand_copy_default``: a node's operator, as get_delegation_info
    names it."""
    return re.sub(r"_\d+$", "", node_name)


def use_venv_flatc() -> None:
    """The exporter runs `flatc`; the wheel ships it beside this interpreter, not always on PATH."""
    flatc = Path(sys.executable).with_name("flatc")
    if "FLATC_EXECUTABLE" not in os.environ and flatc.is_file():
        os.environ["FLATC_EXECUTABLE"] = str(flatc)
