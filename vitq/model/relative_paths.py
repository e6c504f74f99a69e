"""Keep the build machine's directory layout out of artifacts: source paths become relative to the import
root they were found under (``timm/layers/patch_embed.py``), which is what helps a user reading a trace,
and is the same on every machine."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]  # where vitq itself is imported from


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


DEBUG_INFO_SUFFIX = ".debug_pkl"


def strip_torchscript_build_paths(archive: bytes) -> bytes | None:
    """Traced TorchScript keeps the Python call stack of every op, with absolute file names, in
    ``code/**/*.debug_pkl``: the archive with those made relative, or None if it has none.

    The result is a plain zip that ``torch.jit.load`` reads; save the loaded module again for torch's layout.
    """
    import io
    import zipfile

    roots = _roots()
    changed = False
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(archive)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith(DEBUG_INFO_SUFFIX):
                rewritten = _rewrite_pickled_strings(data, lambda text: strip_build_paths(text, roots))
                changed |= rewritten != data
                data = rewritten
            dst.writestr(info.filename, data)
    return out.getvalue() if changed else None


def _rewrite_pickled_strings(data: bytes, rewrite) -> bytes:
    """Rewrite every string of a pickle, opcode by opcode, keeping everything else byte for byte (torch's
    unpickler needs its own int-list and memo opcodes back exactly as written)."""
    import pickletools
    import struct

    ops = list(pickletools.genops(data))
    pieces = []
    for (op, arg, pos), (_, _, end) in zip(ops, [*ops[1:], (None, None, len(data))], strict=True):
        new = rewrite(arg) if op.name in {"BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8"} else arg
        if new != arg:
            encoded = new.encode("utf-8")
            pieces.append(b"X" + struct.pack("<I", len(encoded)) + encoded)
        else:
            pieces.append(data[pos:end])
    return b"".join(pieces)

