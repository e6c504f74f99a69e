"""Weight initialisation that draws the same bits on every x86-64 CPU.

Why: timm and torch initialise Linear weights with a truncated normal, drawn through ``Tensor.erfinv_``, and
ATen computes erfinv (like exp, log and sqrt) with MKL's vector math, whose code path follows the CPU's vendor
and features even in MKL's reproducible mode: an Intel CPU draws other last bits than an AMD one, and trains other
weights from them. ``torch.special.ndtri`` (the normal quantile, erfinv's twin) is ATen's own scalar code, the
same everywhere; erfinv(y) = ndtri((y + 1) / 2) / sqrt(2).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.overrides import TorchFunctionMode


class _ErfinvThroughNdtri(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is not torch.Tensor.erfinv_ or kwargs or not args[0].is_floating_point():
            return func(*args, **kwargs)
        with torch.no_grad():  # init's own calls run without grad; this keeps a stray one from recording
            return torch.special.ndtri(args[0].add_(1).mul_(0.5), out=args[0]).mul_(1 / math.sqrt(2))


@contextmanager
def portable_init() -> Iterator[None]:
    """Within it, ``Tensor.erfinv_`` (what every truncated-normal init calls) goes through ndtri."""
    with _ErfinvThroughNdtri():
        yield
