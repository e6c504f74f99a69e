"""Check a build, an unpacked release or a release tarball as downloaded against its manifest: hashes,
loadability, and re-run metrics. A tarball is unpacked into a temporary folder only, after every member
was checked: no absolute name, no ``..``, no link, nothing but files and folders under one top folder."""

from __future__ import annotations

import contextlib
import json
import math
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vitq.check import manifest as mf
from vitq.errors import InputError, VitqError
from vitq.fileio import sha256_file
from vitq.numerics import error_step

SUMS = "SHA256SUMS"

# Error statistics are recorded as upper bounds at 2 significant digits (vitq.numerics); a re-run here, with
# this process's kernels, may land one step away from the build's figure.
METRIC_TOLERANCE = {"max_abs_logit_diff": 1e-5, "mean_abs_logit_diff": 1e-6}


def verify_target(target: Path, rerun: bool = True) -> list[str]:
    """``target``: a manifest.json, the folder holding one, or a release ``.tar.gz``."""
    with opened_manifest(target) as (manifest_path, shown_as):
        return [p.replace(str(manifest_path.parent), shown_as) for p in verify(manifest_path, rerun)]


@contextlib.contextmanager
def opened_manifest(target: Path) -> Iterator[tuple[Path, str]]:
    """The manifest.json a target means, and how to name its folder in messages. A tarball is unpacked into
    a temporary folder that lives as long as the context."""
    target = Path(target)
    if target.name.endswith((".tar.gz", ".tgz", ".tar")) and not target.is_dir():
        with tempfile.TemporaryDirectory(prefix="vitq-") as tmp:
            top = unpack_release(target, Path(tmp))
            yield top / "manifest.json", f"{target}:{top.name}"
        return
    manifest_path = target / "manifest.json" if target.is_dir() else target
    yield manifest_path, str(manifest_path.parent)


def unpack_release(tarball: Path, into: Path) -> Path:
    """Extract a release into ``into`` after checking every member; return its top folder."""
    try:
        with tarfile.open(tarball) as tar:
            members = tar.getmembers()
            tops = set()
            for m in members:
                parts = Path(m.name).parts
                if m.name.startswith("/") or ".." in parts:
                    raise InputError(tarball, f"member '{m.name}' would land outside the folder it is unpacked in; refused")
                if not (m.isfile() or m.isdir()):
                    raise InputError(tarball, f"member '{m.name}' is a link or special file; refused")
                tops.add(parts[0] if parts else "")
            if len(tops) != 1 or "" in tops:
                raise InputError(tarball, "a release holds one top folder; refused")
            tar.extractall(into, members=members, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InputError(tarball, f"not a readable release archive ({exc.__class__.__name__})") from None
    return into / tops.pop()


def verify(manifest_path: Path, rerun: bool = True) -> list[str]:
    """Every problem found, one line each naming the file; an empty list means the release is intact."""
    manifest_path = Path(manifest_path)
    manifest = mf.load(manifest_path)
    root = manifest_path.parent
    problems = _check_files(manifest, root) + _check_sums(root) + _check_provenance(manifest, root)
    if manifest["passed"] is not True:
        failed = [c["name"] for c in manifest["checks"] if c["passed"] is False]
        problems.append(f"{manifest_path}: the build failed its checks ({', '.join(failed)})")
    if rerun and not problems:
        problems += _rerun(manifest, manifest_path)
    return problems


def _check_files(manifest: dict[str, Any], root: Path) -> list[str]:
    problems = []
    for artifact in manifest["artifacts"]:
        file = root / artifact["path"]
        if not file.is_file():
            problems.append(f"{file}: missing ({artifact['name']})")
        elif file.stat().st_size != artifact["bytes"]:
            problems.append(f"{file}: {file.stat().st_size} bytes, manifest says {artifact['bytes']}")
        elif sha256_file(file) != artifact["sha256"]:
            problems.append(f"{file}: sha256 differs from the manifest")
    labels = root / manifest["samples"]["labels"]
    try:
        samples = mf.samples_record(labels, root)
    except VitqError as exc:
        return problems + [str(exc)]
    except FileNotFoundError as exc:
        return problems + [f"{exc.filename}: missing (sample image)"]
    if samples["sha256"] != manifest["samples"]["sha256"]:
        problems.append(f"{labels.parent}: sample images or labels differ from the manifest")
    return problems


def _listed(root: Path) -> dict[str, str]:
    """SHA256SUMS of an unpacked release: file name -> sha256 (empty for a build folder, which has none)."""
    sums = root / SUMS
    if not sums.is_file():
        return {}
    return {name: digest for digest, _, name in (line.partition("  ") for line in
                                                 sums.read_text(encoding="utf-8").splitlines())}


def _check_sums(root: Path) -> list[str]:
    """An unpacked release carries SHA256SUMS (what `sha256sum -c` checks): every line must still hold."""
    problems = []
    for name, digest in _listed(root).items():
        file = root / name
        if ".." in Path(name).parts or Path(name).is_absolute() or not file.is_file():
            problems.append(f"{file}: listed in {SUMS} but missing")
        elif sha256_file(file) != digest:
            problems.append(f"{file}: sha256 differs from {SUMS}")
    return problems


def _check_provenance(manifest: dict[str, Any], root: Path) -> list[str]:
    """A release (it has SHA256SUMS) carries a valid provenance statement about exactly its files and this
    manifest's recipe and weights."""
    from vitq.ship import provenance
    file = root / provenance.FILE
    if not (root / SUMS).is_file():
        return []
    if not file.is_file():
        return [f"{file}: missing (every release carries its provenance)"]
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return [f"{file}: not readable JSON ({exc.__class__.__name__})"]
    found = provenance.problems(data)
    if found:
        return [f"{file}: {p}" for p in found]
    # Compared with SHA256SUMS, whose every line _check_sums has held against the files: nothing hashed twice.
    listed = _listed(root)
    subjects = {s["name"]: s["digest"]["sha256"] for s in data["subject"]}
    problems = [f"{file}: {name} is in {SUMS} but not a subject" for name in sorted(set(listed) - set(subjects) - {provenance.FILE})]
    for name, digest in sorted(subjects.items()):
        if name not in listed:
            problems.append(f"{file}: subject {name} is not in the release")
        elif listed[name] != digest:
            problems.append(f"{root / name}: sha256 differs from {provenance.FILE}")
    expected = provenance.statement(manifest, subjects)["predicate"]["buildDefinition"]
    recorded = data["predicate"]["buildDefinition"]
    for key in ("externalParameters", "resolvedDependencies"):
        if recorded.get(key) != expected[key]:
            problems.append(f"{file}: buildDefinition.{key} does not match manifest.json")
    return problems


def _rerun(manifest: dict[str, Any], manifest_path: Path) -> list[str]:
    from vitq import progress
    from vitq.check.evaluate import evaluate
    from vitq.model.torch_setup import configure_torch

    root = manifest_path.parent
    recipe = mf.recipe_from_manifest(manifest, root)
    configure_torch(recipe)
    files = mf.artifact_files(manifest, root)
    with progress.stage(f"verify:{recipe.name}"):
        result = evaluate(recipe, files, root / manifest["samples"]["labels"])
    problems = []
    kept_back = {c["variant"] for c in manifest.get("candidates", []) if not c["shipped"]}  # not in a release
    for variant, recorded in manifest["accuracy"].items():
        if variant in kept_back:
            continue
        now = result["metrics"].get(variant)
        if now is None:
            problems.append(f"{manifest_path}: variant {variant} could not be re-run")
            continue
        for key, value in recorded.items():
            if not _close(key, value, now.get(key)):
                problems.append(f"{files.get(variant, manifest_path)}: {variant} {key} is {now.get(key)}, manifest says {value}")
    return problems


def _close(key: str, recorded: Any, now: Any) -> bool:
    if recorded is None or now is None:
        return recorded is now
    tolerance = METRIC_TOLERANCE.get(key, 1e-9)
    if key in METRIC_TOLERANCE:
        tolerance = max(tolerance, error_step(float(recorded)) * (1 + 1e-9))  # one step, plus float slack
    return math.isclose(float(recorded), float(now), rel_tol=0, abs_tol=tolerance)
