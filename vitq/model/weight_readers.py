"""Which nn.Linear layers the model's own code reads the weight or bias of, outside the layer's forward.

Dynamic quantization swaps each Linear for a DynamicQuantizedLinear whose ``weight`` and ``bias`` are methods, so
code such as timm ConViT's ``self.qk.weight.device`` or BEiT/EVA's ``F.linear(x, weight=self.qkv.weight, ...)``
breaks (``'function' object has no attribute 'device'``). Such a Linear has to stay float. They are found by
trying: the float model runs once on an example input while every Linear notes who reads its parameters."""

from __future__ import annotations

from typing import Any

import torch

WATCHED = ("weight", "bias")


def linears_read_directly(model: torch.nn.Module, example: Any) -> list[str]:
    """Names (as ``named_modules`` gives them) of the Linears whose weight or bias the forward reads from outside
    the Linear itself, sorted. The model is left exactly as it was."""
    names = {id(m): name for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    inside: set[int] = set()
    read: set[str] = set()
    watchers: dict[type, type] = {}
    originals = []
    for module in model.modules():
        if id(module) in names:
            cls = type(module)
            if cls not in watchers:
                watchers[cls] = _watcher(cls, inside, read, names)
            originals.append((module, cls))
            module.__class__ = watchers[cls]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for module, cls in originals:
            module.__class__ = cls
    return sorted(read)


def _watcher(cls: type, inside: set[int], read: set[str], names: dict[int, str]) -> type:
    """A subclass of ``cls`` (a Linear class) that records reads of its parameters made from outside its forward."""

    def forward(self: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        inside.add(id(self))
        try:
            return cls.forward(self, *args, **kwargs)
        finally:
            inside.discard(id(self))

    def __getattr__(self: torch.nn.Module, name: str) -> Any:  # parameters are not in __dict__: they come here
        if name in WATCHED and id(self) not in inside:
            read.add(names[id(self)])
        return cls.__getattr__(self, name)

    return type(f"Watched{cls.__name__}", (cls,), {"forward": forward, "__getattr__": __getattr__})
