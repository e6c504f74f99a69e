"""Check a built or unpacked release against its manifest: hashes, loadability, and re-run metrics."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from vitq import manifest as mf
from vitq.errors import VitqError
from vitq.fileio import sha256_file

METRIC_TOLERANCE = {"max_abs_logit_diff": 1e-5, "mean_abs_logit_diff": 1e-6}


def verify(manifest_path: Path, rerun: bool = True) -> list[str]:
    """Every problem found, one line each naming the file; an empty list means the release is intact."""
    manifest_path = Path(manifest_path)
    manifest = mf.load(manifest_path)
    root = manifest_path.parent
    problems = _check_files(manifest, root)
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


def _rerun(manifest: dict[str, Any], manifest_path: Path) -> list[str]:
    from vitq.evaluate import evaluate
    from vitq.torch_setup import configure_torch

    root = manifest_path.parent
    recipe = mf.recipe_from_manifest(manifest, root)
    configure_torch(recipe)
    files = mf.artifact_files(manifest, root)
    result = evaluate(recipe, files, root / manifest["samples"]["labels"])
    problems = []
    for variant, recorded in manifest["accuracy"].items():
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
    return math.isclose(float(recorded), float(now), rel_tol=0, abs_tol=METRIC_TOLERANCE.get(key, 1e-9))
