"""The gate that no artifact holds a path of the machine that built it: which paths those are, and a search of a
file (and of its compressed zip members) for them."""

from __future__ import annotations

import sys
from pathlib import Path

from vitq.model.relative_paths import CHECKOUT


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
