"""Keep the build machine's directory layout out of artifacts: source paths become relative to the import
root they were found under (``timm/layers/patch_embed.py``), which is what helps a user reading a trace,
and is the same on every machine."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent  # where vitq itself is imported from


def _roots() -> list[str]:
    """Import roots, longest first, so the most specific one wins."""
    roots = {str(Path(p).resolve()) for p in sys.path if p and Path(p).is_absolute() and Path(p).is_dir()}
    roots |= {str(Path(p)) for p in sys.path if p and Path(p).is_absolute()}
    roots.add(str(CHECKOUT))
    return sorted(roots, key=len, reverse=True)


def relative_source(filename: str | None, roots: list[str] | None = None) -> str | None:
    """``/…/site-packages/timm/layers/mlp.py`` -> ``timm/layers/mlp.py``."""
    if not filename:
        return filename
    for root in roots or _roots():
        if filename.startswith(root + "/"):
            return filename[len(root) + 1:]
    return filename


def strip_build_paths(text: str, roots: list[str] | None = None) -> str:
    """The same for every path inside a text (a stack trace)."""
    for root in roots or _roots():
        text = text.replace(root + "/", "")
    return text


@contextlib.contextmanager
def relative_torchscript_sources() -> Iterator[None]:
    """While scripting, TorchScript records each function's source file in its debug info: record it relative."""
    import torch._jit_internal
    import torch._sources
    import torch.jit.frontend

    modules = (torch._sources, torch.jit.frontend, torch._jit_internal)
    original = torch._sources.get_source_lines_and_file
    roots = _roots()

    def relative(obj, error_msg=None):
        lines, lineno, filename = original(obj, error_msg)
        return lines, lineno, relative_source(filename, roots)

    saved = [m.get_source_lines_and_file for m in modules]
    for m in modules:
        m.get_source_lines_and_file = relative
    try:
        yield
    finally:
        for m, before in zip(modules, saved, strict=True):
            m.get_source_lines_and_file = before


def strip_onnx_build_paths(model) -> None:
    """The dynamo exporter writes each node's Python stack trace into its metadata: make the paths relative."""
    roots = _roots()  # one look at sys.path for thousands of nodes
    graphs = [model.graph, *(f for f in model.functions)]
    while graphs:
        graph = graphs.pop()
        for node in graph.node:
            for prop in node.metadata_props:
                prop.value = strip_build_paths(prop.value, roots)
            graphs += [a.g for a in node.attribute if a.HasField("g")] + [g for a in node.attribute for g in a.graphs]
