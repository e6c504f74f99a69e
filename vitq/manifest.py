"""The release manifest: computed from files on disk, never from objects in memory.

Holds no wall-clock time and no absolute path, so two identical builds give identical bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from vitq import __version__
from vitq.fileio import sha256_file
from vitq.layout import ArtifactPaths
from vitq.recipe import Recipe, fingerprint

SCHEMA_ID = "vitq.manifest/1"
SCHEMA_FILE = Path(__file__).with_name("manifest.schema.json")
VERSIONED = ("torch", "torchvision", "timm", "transformers", "onnx", "onnxruntime", "onnxscript", "safetensors",
             "numpy", "pillow", "doit")


def artifact_table(recipe: Recipe, paths: ArtifactPaths) -> list[tuple[str, Path, str, str | None]]:
    """(name, file, format, parent) of every model file a build of this recipe has."""
    rows = [("fp32", paths.fp32, "safetensors", None), ("int8", paths.int8, "torchscript", "fp32")]
    if recipe.mobile.optimize:
        rows.append(("optimized", paths.optimized, "torchscript-mobile", "int8"))
    rows.append(("lite", paths.lite, "pytorch-lite", "optimized" if recipe.mobile.optimize else "int8"))
    rows += [("onnx_fp32", paths.onnx_fp32, "onnx", "fp32"), ("onnx_int8", paths.onnx_int8, "onnx", "onnx_fp32")]
    return rows


def tool_versions() -> dict[str, str]:
    found = {"python": platform.python_version(), "vitq": __version__}
    for package in VERSIONED:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "missing"
    return found


def build_manifest(recipe: Recipe, paths: ArtifactPaths, evaluation: dict[str, Any],
                   checks: list[dict[str, Any]]) -> dict[str, Any]:
    resolved = recipe.resolved()
    fp32_bytes = paths.fp32.stat().st_size
    artifacts = []
    for name, file, fmt, parent in artifact_table(recipe, paths):
        size = file.stat().st_size
        artifacts.append({
            "name": name, "path": _relative(file, paths.root), "format": fmt, "bytes": size,
            "sha256": sha256_file(file), "parent": parent, "size_ratio_vs_fp32": round(size / fp32_bytes, 4),
        })
    return {
        "schema": SCHEMA_ID,
        "recipe": {"name": recipe.name, "version": recipe.version,
                   "sha256": hashlib.sha256(fingerprint(resolved).encode()).hexdigest(), "resolved": resolved},
        "weights": {"source": recipe.weights.kind, "trained": recipe.weights.kind != "random",
                    "note": "untrained random weights: accuracy figures are not meaningful"
                    if recipe.weights.kind == "random" else None},
        "versions": tool_versions(),
        "samples": samples_record(paths),
        "artifacts": artifacts,
        "accuracy": evaluation["metrics"],
        "classes": evaluation["classes"],
        "checks": checks,
        "passed": all(c["passed"] is not False for c in checks),
    }


def samples_record(paths: ArtifactPaths) -> dict[str, Any]:
    """The sample set as one hash over its labels file and every image it names."""
    from vitq.samples import read_labels

    digest = hashlib.sha256()
    rows = read_labels(paths.samples_labels)
    for name, _ in [("labels.csv", ()), *rows]:
        digest.update(f"{name}\0{sha256_file(paths.samples_dir / name)}\n".encode())
    return {"path": _relative(paths.samples_dir, paths.root), "labels": _relative(paths.samples_labels, paths.root),
            "images": len(rows), "sha256": digest.hexdigest()}


def dumps(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest, indent=2, sort_keys=True) + "\n"


def load(path: Path) -> dict[str, Any]:
    import jsonschema

    from vitq.errors import InputError

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(path, "manifest not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(path, f"not a readable manifest ({exc.__class__.__name__})") from None
    try:
        jsonschema.validate(data, schema())
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top)"
        raise InputError(path, f"{where}: {exc.message}") from None
    return data


def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


def _relative(file: Path, root: Path) -> str:
    return Path(os.path.relpath(file, root)).as_posix()
