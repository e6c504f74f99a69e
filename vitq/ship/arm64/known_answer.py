"""A program whose exact answer is known, run before an emulator's verdict is trusted.

An emulator can be wrong itself: qemu 7.2's ``-cpu max`` (SME without SME2) ran the digits int8 program at chance
while every real-arithmetic path agreed with x86. Comparing a file's ARM run with its x86 run cannot tell a defective
emulator from a defective kernel; an exact answer can. The program is the operators vitq's programs are made of, in
XNNPACK: a dynamically quantized int8 Linear (the qd8 GEMM kernels each CPU family has its own of) and a float one,
on integer inputs and weights chosen so that every quantization scale is exactly 1 (each token spans -128..127,
each weight row reaches +-127) and every sum is exact in float32. The right answer is integer arithmetic, computed
here with numpy; any kernel path on any CPU must give it to the last bit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TOKENS, WIDTH, QUANTIZED_OUT, FLOAT_OUT = 65, 64, 48, 40  # digits' token count and width
SEED = 20261206
FILES = ("program.pte", "input.npy", "expected.npy")


def write(folder: Path) -> dict[str, str]:
    """The program, its input and its exact answer in ``folder``; their paths by role (a guest job's known_answer)."""
    import torch

    from vitq.fileio import write_bytes
    from vitq.model.executorch_export import use_venv_flatc

    rng = np.random.default_rng(SEED)
    x = _integer_tokens(rng)
    w_q, w_f = _integer_weights(rng, QUANTIZED_OUT), _integer_weights(rng, FLOAT_OUT)
    expected = np.concatenate([x[0].astype(np.int64) @ w_q.T.astype(np.int64),
                               x[0].astype(np.int64) @ w_f.T.astype(np.int64)], axis=-1)[None].astype(np.float64)

    class KnownAnswer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.quantized = torch.nn.Linear(WIDTH, QUANTIZED_OUT, bias=False)
            self.kept_float = torch.nn.Linear(WIDTH, FLOAT_OUT, bias=False)
            self.quantized.weight.data = torch.from_numpy(w_q.astype(np.float32))
            self.kept_float.weight.data = torch.from_numpy(w_f.astype(np.float32))

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            return torch.cat([self.quantized(tokens), self.kept_float(tokens)], dim=-1)

    use_venv_flatc()
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    from vitq.errors import quiet_stderr
    from vitq.model.pte_quantization import quantize_for_xnnpack

    example = (torch.from_numpy(x.astype(np.float32)),)
    with quiet_stderr():
        exported = quantize_for_xnnpack(KnownAnswer().eval(), example, "dynamic_int8", keep_float=("kept_float",))
        program = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()]).to_executorch().buffer
    folder.mkdir(parents=True, exist_ok=True)
    paths = dict(zip(("program", "input", "expected"), (folder / f for f in FILES), strict=True))
    write_bytes(paths["program"], program)
    np.save(paths["input"], x.astype(np.float32))
    np.save(paths["expected"], expected)
    return {role: str(path) for role, path in paths.items()}


def _integer_tokens(rng: np.random.Generator) -> np.ndarray:
    """[1, TOKENS, WIDTH] integers in -128..127, each token holding both ends: its dynamic int8 scale is exactly 1."""
    x = rng.integers(-128, 128, size=(1, TOKENS, WIDTH))
    for token in x[0]:
        low, high = rng.choice(WIDTH, size=2, replace=False)
        token[low], token[high] = -128, 127
    return x


def _integer_weights(rng: np.random.Generator, rows: int) -> np.ndarray:
    """[rows, WIDTH] integers in -127..127, each row reaching +-127: its symmetric per-channel scale is exactly 1."""
    w = rng.integers(-127, 128, size=(rows, WIDTH))
    for row in w:
        row[rng.integers(WIDTH)] = rng.choice([-127, 127])
    return w
