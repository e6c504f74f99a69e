"""The wrapper every transformers model is built in. Its own module, rarely edited: traced TorchScript and ONNX
files of a transformers recipe record this class's qualified name, file and line numbers, so an edit here (and
only here) changes their bytes."""

from __future__ import annotations

import torch


class LogitsOnly(torch.nn.Module):
    """transformers models return an output object; mobile runtimes want a plain logits tensor."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).logits
