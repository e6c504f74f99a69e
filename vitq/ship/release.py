"""Pack a verified build into one deterministic .tar.gz for CI to publish, with its provenance
(``provenance.intoto.json``) and ``SHA256SUMS`` of every file, the provenance included.

Same build, same bytes: entries sorted, fixed mtime (SOURCE_DATE_EPOCH or 0), uid/gid 0, no owner
names, fixed modes, and a gzip header without a timestamp or file name.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from pathlib import Path

from vitq.check import manifest as mf
from vitq.errors import VitqError
from vitq.fileio import atomic_path, json_text, sha256_file
from vitq.layout import ArtifactPaths
from vitq.ship import provenance
from vitq.ship.arm64 import record as arm64_record
from vitq.ship.verify import SUMS, verify


def release_name(manifest: dict) -> str:
    return f"{manifest['recipe']['name']}-{manifest['recipe']['version']}"


def release_files(manifest: dict, paths: ArtifactPaths) -> list[str]:
    """Every file of the release, relative to the build folder, sorted."""
    names = {a["path"] for a in manifest["artifacts"]}
    names |= {paths.manifest.name, paths.report.name, paths.eval.name}
    samples = paths.samples_dir.relative_to(paths.root).as_posix()
    names |= {f"{samples}/{p.name}" for p in paths.samples_dir.iterdir() if p.is_file()}
    return sorted(names)


def make_release(build_dir: Path, out_dir: Path) -> Path:
    """Check the build (hashes only; its manifest already records the re-run), then pack it."""
    paths = ArtifactPaths(Path(build_dir).absolute())
    manifest = mf.load(paths.manifest)
    problems = verify(paths.manifest, rerun=False)
    if problems:
        raise VitqError(f"{paths.root}: not releasable: {problems[0]}" + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""))
    top = release_name(manifest)
    files = release_files(manifest, paths)
    # report.md as the build wrote it: an ARM verification's section is published beside the release (arm64.record)
    contents = {paths.report.name: arm64_record.without_section(paths.report.read_text(encoding="utf-8")).encode()}
    digests = {f: hashlib.sha256(contents[f]).hexdigest() if f in contents else sha256_file(paths.root / f)
               for f in files}
    contents[provenance.FILE] = json_text(provenance.statement(manifest, digests)).encode()
    digests[provenance.FILE] = hashlib.sha256(contents[provenance.FILE]).hexdigest()
    contents[SUMS] = "".join(f"{digest}  {f}\n" for f, digest in sorted(digests.items())).encode()
    target = Path(out_dir) / f"{top}.tar.gz"
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
            with tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
                _add_dir(tar, top)
                entries = sorted({*files, *contents})
                for folder in sorted({str(Path(f).parent) for f in entries} - {"."}):
                    _add_dir(tar, f"{top}/{folder}")
                for name in entries:
                    data = contents[name] if name in contents else (paths.root / name).read_bytes()
                    _add_file(tar, f"{top}/{name}", data)
    return target


def _mtime() -> int:
    return int(os.environ.get("SOURCE_DATE_EPOCH", "0"))


def _info(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = _mtime(), 0, 0, "", ""
    return info


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = _info(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    tar.addfile(info)


def _add_file(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = _info(name)
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))
