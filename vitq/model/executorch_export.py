"""The ExecuTorch program: the model exported with torch.export, quantized with pt2e, lowered to XNNPACK, and a
record of what XNNPACK took, what it left on portable kernels and the partitioner's reason for each.

Before export the model is rewritten so that XNNPACK takes the whole graph (vitq.model.xnnpack_rewrites); the
rewrites apply to this export only, so the TorchScript and ONNX files keep their bytes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch

from vitq.errors import converting, quiet_stderr
from vitq.model import networks
from vitq.progress import Progress
from vitq.recipe import Recipe

PARTITIONER_LOGGER = "executorch.backends.xnnpack"
PTE_OFF = "or switch the .pte off with executorch: {enabled: false}"
TUPLE_UNPACKING = "getitem"  # unpacks a delegate's outputs: no compute, not counted as portable


def export_executorch(recipe: Recipe, model: torch.nn.Module, strategy: str, calibration: torch.Tensor | None = None,
                      keep_float: tuple[str, ...] = ()) -> tuple[bytes, dict[str, Any]]:
    """The model as an ExecuTorch program lowered to XNNPACK, quantized per ``strategy`` (one of the recipe's
    candidates, vitq.model.pte_quantization; ``calibration``: image batch for static_int8; ``keep_float``: layers
    left in float); with what the partitioner delegated (nodes per operator, and why any stayed out).

    xnnpack rewrites -> torch.export (non-strict: transformers' forward takes keywords) and quantization ->
    to_edge_transform_and_lower(edge passes, XnnpackPartitioner) -> to_executorch. Exported for batch 1, as an app
    runs it.
    """
    use_venv_flatc()
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    from vitq.model.pte_quantization import quantize_for_xnnpack
    from vitq.model.xnnpack_rewrites import edge_passes, prepare_for_xnnpack

    example = (networks.example_input(recipe),)
    pte_off = f"try executorch: {{quantize: none}}, {PTE_OFF}"
    with (Progress(3, unit="step") as progress, quiet_stderr(),  # a failure's fake-tensor log
          converting(recipe.path, "executorch", f"exporting {recipe.model.name} for ExecuTorch", pte_off)):
        progress.step(f"export and quantize (torch.export, {strategy})")
        program = quantize_for_xnnpack(prepare_for_xnnpack(model), example, strategy,
                                       group_size=recipe.executorch.group_size, calibration=calibration,
                                       keep_float=keep_float)
        progress.step("lower (XNNPACK)")
        with partitioner_reasons() as reasons:
            edge = to_edge_transform_and_lower(program, transform_passes=edge_passes(program),
                                              partitioner=[XnnpackPartitioner()])
        delegation = delegation_record(edge.exported_program().graph_module, reasons)
        progress.step("serialize (to_executorch)")
        program = edge.to_executorch().buffer
        run_lowered_once(program, example)  # XNNPACK 1.3.1 lowers programs its runtime then refuses
    return program, delegation


class LoweredProgramFails(RuntimeError):
    """The lowered program does not run in ExecuTorch's runtime (XNNPACK refuses it at its first execute)."""


def run_lowered_once(program: bytes, example: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    """Run the serialized program once on the example in ExecuTorch's runtime, as an app would; its outputs. Raise
    LoweredProgramFails with the runtime's own cause (the first error line it logs, e.g. XNNPACK 1.3.1's
    "Propagating input shapes failed with code: xnn_status_invalid_parameter" for dynamically quantized
    EfficientViT and TinyViT) when it does not run: lowering succeeds there, only execute() fails, and the
    exception itself says only "method->execute() failed with error 0x1"."""
    import tempfile

    from executorch.runtime import Runtime

    with tempfile.TemporaryDirectory() as folder, tempfile.TemporaryFile(mode="w+") as log:
        path = Path(folder) / "program.pte"
        path.write_bytes(program)
        try:
            with quiet_stderr(into=log):  # the runtime logs the cause from C++, on stderr
                loaded = Runtime.get().load_program(path)  # the method runs inside the program's memory: keep both
                outputs = loaded.load_method("forward").execute([t.contiguous() for t in example])
        except Exception as exc:
            failure: Exception | None = exc
        else:
            failure = None
        if failure is not None:
            log.seek(0)
            causes = [line.strip() for line in log if "Error" in line or "failed" in line]
            cause = causes[0] if causes else str(failure).splitlines()[0]
            raise LoweredProgramFails(f"the lowered program does not run in ExecuTorch: {cause}") from None
    return list(outputs)


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
