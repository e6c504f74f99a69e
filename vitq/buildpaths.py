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


def machine_paths(artifacts_root: Path) -> dict[str, str]:
    """This machine's absolute paths that no artifact may contain -> what each is (the gate's wording).
    Both the path as given and as resolved: a symlinked venv or checkout shows up under either."""
    candidates = [("artifacts root", Path(artifacts_root)), ("checkout", CHECKOUT), ("venv", Path(sys.prefix)),
                  ("home", Path.home())]
    found: dict[str, str] = {}
    for what, path in candidates:
        for form in (path.absolute(), path.resolve()):
            if len(form.parts) > 1:  # never "/"
                found.setdefault(str(form), what)
    return found


def build_paths_in(file: Path, forbidden: dict[str, str]) -> list[str]:
    """Which of ``forbidden`` occur in a file (zip members decompressed), most specific first."""
    import mmap
    import zipfile

    needles = sorted(forbidden, key=len, reverse=True)
    with open(file, "rb") as fh:
        if Path(file).stat().st_size == 0:
            return []
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
            hits = [n for n in needles if data.find(n.encode()) != -1]
    if zipfile.is_zipfile(file):
        with zipfile.ZipFile(file) as archive:
            for info in archive.infolist():
                if info.compress_type != zipfile.ZIP_STORED:
                    member = archive.read(info)
                    hits += [n for n in needles if n not in hits and n.encode() in member]
    return sorted(hits, key=len, reverse=True)
