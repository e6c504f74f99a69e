"""Runs mobile files on preprocessed images inside one runtime (an emulated aarch64 one, or x86-64 for the reference
run) and writes their logits. A script, not a vitq module: the emulated interpreter has numpy, torch, ExecuTorch's
runtime and onnxruntime, and nothing of vitq's (its file is run by path).

    python guest.py JOB.json

JOB.json: {"inputs": images.npy [N, 3, H, W] float32, "engine": quantized engine of the .ptl, "out": folder,
"known_answer": {"program", "input", "expected"} or null, "files": [{"name", "format", "path"}]}. Writes
``out/<index>.npy`` per file and ``out/result.json``: the machine, the CPU capabilities the process sees, the known-
answer check's error, and per file its seconds or the one-line reason it did not run. Progress goes to stdout.
A failed known-answer check runs no file: on an emulator that computes wrong they prove nothing (and may crash).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time

# Linux's arm64 hardware capabilities (AT_HWCAP, AT_HWCAP2 bits) that pick XNNPACK's kernel family.
HWCAP = {"asimd": 1, "asimdhp": 10, "asimddp": 20, "sve": 22}
HWCAP2 = {"sve2": 1, "i8mm": 13, "bf16": 14, "sme": 23, "sme2": 37}
AT_HWCAP, AT_HWCAP2 = 16, 26
PROGRESS_EVERY = 10.0  # seconds between progress lines of one file


def hardware_capabilities() -> list[str]:
    """The arm64 capabilities this process sees (the emulated CPU's, from /proc/self/auxv); [] elsewhere."""
    if platform.machine() != "aarch64":
        return []
    import struct

    with open("/proc/self/auxv", "rb") as f:
        raw = f.read()
    auxv = dict(struct.iter_unpack("<QQ", raw[: len(raw) // 16 * 16]))
    found = [name for name, bit in HWCAP.items() if auxv.get(AT_HWCAP, 0) >> bit & 1]
    return found + [name for name, bit in HWCAP2.items() if auxv.get(AT_HWCAP2, 0) >> bit & 1]


def executorch_runner(path: str):
    import torch
    from executorch.runtime import Runtime

    program = Runtime.get().load_program(path)
    method = program.load_method("forward")

    def run(image):
        return method.execute([torch.from_numpy(image[None]).contiguous()])[0].float().numpy()

    run.program = program  # the method lives inside the program's memory
    return run


def lite_runner(path: str, engine: str):
    import torch
    from torch.jit.mobile import _load_for_lite_interpreter

    torch.backends.quantized.engine = engine
    module = _load_for_lite_interpreter(path)

    def run(image):
        with torch.no_grad():
            return module(torch.from_numpy(image[None])).float().numpy()

    return run


def onnx_runner(path: str):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda image: session.run(None, {name: image[None]})[0]


def runner(file: dict, engine: str):
    if file["format"] == "executorch":
        return executorch_runner(file["path"])
    if file["format"] == "pytorch-lite":
        return lite_runner(file["path"], engine)
    if file["format"] == "onnx":
        return onnx_runner(file["path"])
    raise ValueError(f"no runner for format {file['format']}")


def known_answer(spec: dict) -> dict:
    """Run the known-answer program; its largest difference from the exact answer."""
    import numpy as np

    start = time.monotonic()
    run = executorch_runner(spec["program"])
    out = run(np.load(spec["input"])[0])
    expected = np.load(spec["expected"])
    error = float(np.abs(out.astype(np.float64) - expected).max()) if out.shape == expected.shape else float("inf")
    return {"max_abs_error": error, "seconds": round(time.monotonic() - start, 3)}


def main(job_path: str) -> int:
    import numpy as np
    import torch

    torch.set_num_threads(1)
    job = json.loads(open(job_path, encoding="utf-8").read())
    os.makedirs(job["out"], exist_ok=True)
    images = np.load(job["inputs"])
    result = {"machine": platform.machine(), "capabilities": hardware_capabilities(), "files": {}}
    if job.get("known_answer"):
        result["known_answer"] = known_answer(job["known_answer"])
        if result["known_answer"]["max_abs_error"] != 0.0:  # a wrong emulator: its runs would prove nothing
            print(f"known-answer check failed (max error {result['known_answer']['max_abs_error']:.6g})", flush=True)
            job["files"] = []
    for index, file in enumerate(job["files"]):
        start = last = time.monotonic()
        print(f"{file['name']}: loading", flush=True)
        try:
            run = runner(file, job["engine"])
            outputs = []
            for i, image in enumerate(images, 1):
                outputs.append(run(np.ascontiguousarray(image)))
                if time.monotonic() - last >= PROGRESS_EVERY:
                    last = time.monotonic()
                    print(f"{file['name']}: {i}/{len(images)} images", flush=True)
            np.save(os.path.join(job["out"], f"{index}.npy"), np.concatenate(outputs).astype(np.float32))
            result["files"][file["name"]] = {"seconds": round(time.monotonic() - start, 3)}
        except Exception as exc:  # one line, recorded: the host reports it as this file's problem
            lines = str(exc).strip().splitlines() or [exc.__class__.__name__]
            result["files"][file["name"]] = {"error": f"{exc.__class__.__name__}: {lines[0][:300]}"}
        print(f"{file['name']}: done", flush=True)
    with open(os.path.join(job["out"], "result.json"), "w", encoding="utf-8") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
