"""Atomic writes and content hashes.

A target is written as ``<dir>/.tmp-<random>/<final name>`` and then renamed over the final path.
Keeping the final name matters: torch's zip archives are named after the file's stem, so a
``final.tmp`` name would change the bytes. A killed build leaves only a hidden temp folder, never
a truncated file under the final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TMP_PREFIX = ".tmp-"


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path with the same file name; on success, move it over ``final``."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmpdir = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=final.parent))
    tmp = tmpdir / final.name
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"{tmp} was not written")
        _fsync(tmp)
        _default_permissions(tmp)
        if tmp.is_dir() and final.is_dir():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(final.parent)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def write_bytes(final: Path, data: bytes) -> None:
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)


def write_text(final: Path, text: str) -> None:
    write_bytes(final, text.encode("utf-8"))


def json_text(data: Any) -> str:
    """The one form of every JSON record vitq writes (eval, manifest, provenance, delegation): sorted keys, so
    the same data is the same bytes."""
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def canonical(data: Any) -> str:
    """A canonical JSON string for hashing (fingerprints, cache keys): equal data, equal string."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def write_json(final: Path, data: Any) -> None:
    write_text(final, json_text(data))


def remove_stale_temps(folder: Path) -> None:
    """Drop temp folders a killed build left behind (they are never mistaken for targets)."""
    if folder.is_dir():
        for entry in folder.glob(f"{TMP_PREFIX}*"):
            shutil.rmtree(entry, ignore_errors=True)


def sha256_file(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _default_permissions(path: Path) -> None:
    """Temp files may be created private (mkstemp-style); a finished target gets the usual umask."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


def _fsync(path: Path) -> None:
    if path.is_dir():
        for child in path.rglob("*"):
            if child.is_file():
                _fsync(child)
        return
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
