"""The release manifest: computed from files on disk, never from objects in memory.

Holds no wall-clock time and no absolute path, so two identical builds give identical bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vitq.check.versions import recorded_versions
from vitq.errors import InputError
from vitq.fileio import canonical, sha256_file
from vitq.layout import CALIBRATION, SAMPLES, TORCHSCRIPT_RECORD
from vitq.model.samples import read_labels
from vitq.recipe import Recipe
from vitq.variants import BY_ID, REFERENCE, Variant, parent_of, shipped

SCHEMA_ID = "vitq.manifest/1"
SCHEMA_FILE = Path(__file__).with_name("manifest.schema.json")


def build_manifest(recipe: Recipe, files: Mapping[str, Path], root: Path, evaluation: dict[str, Any],
                   checks: list[dict[str, Any]], weights_uri: str,
                   choice: tuple[str | None, list[dict[str, Any]]] = (None, [])) -> dict[str, Any]:
    """``files`` maps every shipped variant id (and ``samples``, ``delegation:<candidate>``, ``calibration``, and
    ``weights`` for a weights file) to its file. ``choice``: the ExecuTorch candidate that ships and every
    candidate's record (vitq.check.gates.choose_candidate): only the chosen one is an artifact."""
    resolved = recipe.resolved()
    chosen, records = choice
    artifacts = {}
    for variant in shipped(recipe):
        artifacts[variant.id] = _artifact(recipe, variant, files, root)
    candidates = [{**_candidate(artifacts.pop(r["variant"]), evaluation["metrics"].get(r["variant"])),
                   **{k: r[k] for k in ("passed", "shipped", "why", "checks")}} for r in records]
    for record in candidates:
        if record["shipped"]:
            artifacts[record["variant"]] = _artifact(recipe, BY_ID[record["variant"]], files, root)
    return {
        "schema": SCHEMA_ID,
        "recipe": {"name": recipe.name, "version": recipe.version,
                   "sha256": hashlib.sha256(canonical(resolved).encode()).hexdigest(), "resolved": resolved},
        "weights": weights_record(recipe, files, weights_uri),
        "versions": recorded_versions(),
        "samples": samples_record(files[SAMPLES], root),
        **({"calibration": calibration_record(recipe, files[CALIBRATION], root)} if CALIBRATION in files else {}),
        "artifacts": [artifacts[v.id] for v in shipped(recipe) if v.id in artifacts],
        **({"candidates": candidates} if candidates else {}),
        "accuracy": evaluation["metrics"],
        "classes": evaluation["classes"],
        "checks": checks,
        "passed": all(c["passed"] is not False for c in checks) and (chosen is not None or not records),
    }


def _artifact(recipe: Recipe, variant: Variant, files: Mapping[str, Path], root: Path) -> dict[str, Any]:
    file = files[variant.id]
    size = file.stat().st_size
    delegation = files.get(f"delegation:{variant.id}")
    return {
        "name": variant.id, "path": _relative(file, root), "format": variant.format, "bytes": size,
        "sha256": sha256_file(file), "parent": parent_of(variant.id, recipe),
        "size_ratio_vs_fp32": round(size / files[REFERENCE].stat().st_size, 4),
        **({"delegation": json.loads(delegation.read_text(encoding="utf-8"))} if delegation else {}),
        **_torchscript(files.get(TORCHSCRIPT_RECORD) if variant.id == "int8" else None),
    }


def _torchscript(record: Path | None) -> dict[str, Any]:
    """How int8.pt was made, where the build chose something the recipe does not say (``export.method: auto``, or
    Linears kept float because the model's code reads their weight); nothing otherwise, so the manifest of a
    recipe that says ``script`` and quantizes every Linear stays as it was."""
    data = json.loads(record.read_text(encoding="utf-8")) if record is not None and record.exists() else {}
    if data.get("method_asked") != "auto" and not data.get("keep_float"):
        return {}
    return {"torchscript": {"method": data["method"], "keep_float": data["keep_float"]}}


def _candidate(artifact: dict[str, Any], metrics: dict[str, Any] | None) -> dict[str, Any]:
    """An ExecuTorch candidate as the manifest and report compare them (its file stays in the build folder);
    ``metrics`` None for a failed candidate (no program to evaluate: its figures are null)."""
    quantization = artifact.get("delegation", {}).get("quantization", {})
    measured = {key: (metrics or {}).get(key) for key in ("top1", "agreement", "max_abs_logit_diff")}
    return {
        "variant": artifact["name"], "strategy": BY_ID[artifact["name"]].strategy, "path": artifact["path"],
        "bytes": artifact["bytes"], "sha256": artifact["sha256"], "size_ratio_vs_fp32": artifact["size_ratio_vs_fp32"],
        **measured,
        "keep_float": quantization.get("keep_float", []),
        "portable_nodes": artifact.get("delegation", {}).get("portable_nodes"),
    }


def calibration_record(recipe: Recipe, listing: Path, root: Path) -> dict[str, Any]:
    """The calibration set as one hash over its listing and every image it names, and where it came from."""
    names = listing.read_text(encoding="utf-8").split()
    source = "training split" if recipe.calibration.split else "folder"
    return {"path": _relative(listing.parent, root), "source": source, "images": len(names),
            "sha256": _listing_digest(listing, names)}


def weights_record(recipe: Recipe, files: Mapping[str, Path], uri: str) -> dict[str, Any]:
    """The weight source; a weights file's sha256, so a release names exactly what it was built from."""
    random = not recipe.accuracy_meaningful
    record = {"source": recipe.weights.kind, "trained": not random, "uri": uri,
              "note": "untrained random weights: accuracy figures are not meaningful" if random else None}
    if "weights" in files:
        record["sha256"] = sha256_file(files["weights"])
    return record


def samples_record(labels: Path, root: Path) -> dict[str, Any]:
    """The sample set as one hash over its labels file and every image it names."""
    rows = read_labels(labels)
    return {"path": _relative(labels.parent, root), "labels": _relative(labels, root),
            "images": len(rows), "sha256": _listing_digest(labels, [name for name, _ in rows])}


def _listing_digest(listing: Path, names: list[str]) -> str:
    """One sha256 over a listing file and each file it names beside it (name and sha256 of each, in order)."""
    digest = hashlib.sha256()
    for name in [listing.name, *names]:
        digest.update(f"{name}\0{sha256_file(listing.parent / name)}\n".encode())
    return digest.hexdigest()


def artifact_files(manifest: dict[str, Any], root: Path) -> dict[str, Path]:
    """Variant id -> file, as the manifest lists them (for verify and predict)."""
    return {a["name"]: root / a["path"] for a in manifest["artifacts"]}


def recipe_from_manifest(manifest: dict[str, Any], root: Path) -> Recipe:
    """The resolved recipe the build used; enough to rebuild architectures and preprocessing."""
    resolved = dict(manifest["recipe"]["resolved"])
    return Recipe.model_validate({**resolved, "source": str(root / f"{resolved['name']}.yaml")}, strict=False)


def load(path: Path) -> dict[str, Any]:
    import jsonschema

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
    _refuse_paths_outside(data, Path(path))
    return data


def _refuse_paths_outside(manifest: dict[str, Any], manifest_path: Path) -> None:
    """A manifest is untrusted input: every path it names must stay inside its build folder (no ``..``, no
    absolute path, no symlink out), or verify would read, load and run files from anywhere."""
    root = manifest_path.parent.resolve()
    named = [(f"artifacts/{i}/path", a["path"]) for i, a in enumerate(manifest["artifacts"])]
    named += [(f"samples/{key}", manifest["samples"][key]) for key in ("path", "labels")]
    for where, relative in named:
        target = Path(relative)
        if target.is_absolute() or ".." in target.parts or not (root / target).resolve().is_relative_to(root):
            raise InputError(manifest_path, f"{where}: '{relative}' points outside the build folder; refused")


def schema() -> dict[str, Any]:
    """The JSON schema, with the variant and format names filled in from the variant table."""
    from vitq.variants import VARIANTS

    data = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    item = data["properties"]["artifacts"]["items"]["properties"]
    item["name"]["enum"] = [v.id for v in VARIANTS if v.shipped]
    item["format"]["enum"] = sorted({v.format for v in VARIANTS if v.shipped})
    data["properties"]["accuracy"]["propertyNames"]["enum"] = [v.id for v in VARIANTS]
    return data


def _relative(file: Path, root: Path) -> str:
    return Path(os.path.relpath(file, root)).as_posix()
