"""onnxruntime sessions configured the same way everywhere: CPU, fixed threads, sequential."""

from __future__ import annotations

from pathlib import Path

from vitq.errors import InputError


def session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise InputError(path, f"onnxruntime cannot load it: {str(exc).strip().splitlines()[0][:200]}") from None
