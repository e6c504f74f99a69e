"""CPU-independent numerics for the stages whose floats shape bytes: training (fp32) and evaluation (eval).

Why: torch picks its vectorized kernels (ATen) by the CPU it runs on, MKL its BLAS code path by the CPU and by
the memory alignment of its operands, oneDNN its JIT kernels by the CPU (and blocking by its caches). So the same
training on an AVX-512 host gives other weights than on an AVX2 one, and a model whose weights are
memory-mapped computes other last bits than the same model in freshly allocated memory. The libraries read the
variables below once, when torch loads: a pinned stage runs in an interpreter started with them
(``vitq.orchestration.stage_process`` starts one; ``python -m vitq.orchestration.runner`` re-executes itself with them), while every other
stage keeps the fast kernels of the warm stage server.

The level, chosen by measurement (README, "Same bytes in any place"): AVX2 for ATen (the same compiled kernels
on every AVX2 CPU); MKL's COMPATIBLE branch in strict CNR mode (fixed cache sizes, deterministic reductions, the
same bits for unaligned data and any thread count), the one branch MKL runs alike on Intel and AMD CPUs: for its
AVX2 branch it runs the AVX2 code on Intel CPUs and its AUTO choice on others, and the two round small matrix
products differently (qemu-x86_64 -cpu Haswell against this AMD host); no thread-count changes at run time; no
oneDNN in the process (its JIT kernels tile by cache size; convolutions fall back to ATen's own, which calls
MKL); no NNPACK (it blocks convolutions by the CPU's cache sizes); attention as matmuls and a softmax (ATen's
fused CPU attention rounds differently on Intel and AMD CPUs); and weight init through ``portable_init``. MKL's
SSE2 matrix products cost more than its AVX2 ones, dropping NNPACK and the fused attention saved about as much:
digits trains in 0.94x the time of the AVX2 branch with those (89 s against 95 s on a 2-core AMD EPYC). No torch
import here: the doit process reads this.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from decimal import ROUND_CEILING, Decimal

LEVEL = "AVX2"  # what torch.backends.cpu.get_cpu_capability() says in a pinned process on a capable CPU
PINNED_ENV = {
    "ATEN_CPU_CAPABILITY": LEVEL.lower(),
    "MKL_CBWR": "COMPATIBLE,STRICT",
    "MKL_DYNAMIC": "FALSE",
    "OMP_DYNAMIC": "FALSE",
    "ONEDNN_MAX_CPU_ISA": LEVEL,
}


def pinned_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` with the pins on top (they override whatever the caller set)."""
    return {**environ, **PINNED_ENV}


def is_pinned(environ: Mapping[str, str] = os.environ) -> bool:
    return all(environ.get(key) == value for key, value in PINNED_ENV.items())


def enter_pinned_stage() -> None:
    """In a pinned stage's process, before it computes: no oneDNN or NNPACK kernels (they tile by cache size),
    attention without the fused kernel, and one line on doit's stderr (where progress goes: a fresh stage's own stderr is
    read only when it fails) when this CPU cannot run the pinned level (its bytes then differ from other machines').
    Nothing in a process started without the pins (a stage run in-process by a test keeps its numerics)."""
    if not is_pinned():
        return
    import torch

    torch.backends.mkldnn.enabled = False
    torch.backends.nnpack.set_flags(False)
    # Attention as matmuls and a softmax. timm's own (set before a model is built) is also the faster one here;
    # torch's switch, named cuda but its only one, covers models that call scaled_dot_product_attention directly.
    torch.backends.cuda.enable_flash_sdp(False)
    import timm.layers

    timm.layers.set_fused_attn(False)
    capability = torch.backends.cpu.get_cpu_capability()
    if capability != LEVEL:
        from vitq.progress import default_stream

        print(f"vitq: warning: this CPU runs torch at {capability}, below {LEVEL}: training and evaluation are "
              "reproducible here but not bit-identical with builds on AVX2 machines", file=default_stream(), flush=True)


# ---------------------------------------------------------------- figures measured by kernels we cannot pin

# onnxruntime (MLAS) and XNNPACK choose their kernels by CPUID, not by these variables: the error figures of
# their variants carry the last bits (and, for int8, the rounding of a few activations) of whatever kernels
# ran. So every logit-error statistic is recorded as an upper bound with 2 significant digits and a
# resolution of 1e-5 (float32 logits of a few units carry noise near 1e-6): a figure changes between two CPUs
# only when it lies within that noise of a step.
ERROR_DIGITS = 2
ERROR_RESOLUTION = Decimal("1e-5")


def error_step(value: float) -> float:
    """The step the recorded figure ``value`` is a multiple of (0 for an exact 0)."""
    if value <= 0:
        return 0.0
    return float(_step(_decimal(value)))


def recorded_error(value: float) -> float:
    """An error statistic as it is recorded: rounded up to its step (so a gate on it errs on the safe side)."""
    if value <= 0:
        return 0.0
    exact = _decimal(value)
    step = _step(exact)
    return float((exact / step).to_integral_value(rounding=ROUND_CEILING) * step)


def _decimal(value: float) -> Decimal:
    """The shortest decimal that reads back as ``value`` (1e-05, not the binary 1.00000000000000008e-05): a
    recorded figure recorded again stays the same."""
    return Decimal(repr(float(value)))


def _step(value: Decimal) -> Decimal:
    return max(Decimal(10) ** (value.adjusted() - ERROR_DIGITS + 1), ERROR_RESOLUTION)
