"""The manifest: made from the files on disk, validated by its schema, listing exactly the shipped variants."""

from __future__ import annotations

import json

import jsonschema
import pytest

from vitq.check import manifest as mf
from vitq.errors import InputError
from vitq.fileio import sha256_file
from vitq.variants import VARIANTS, parent_of, variants_for


def test_a_build_manifest_lists_every_shipped_variant_with_hash_size_parent_and_format(tiny_build):
    manifest = json.loads(tiny_build.manifest.read_text())
    jsonschema.validate(manifest, mf.schema())
    recipe = mf.recipe_from_manifest(manifest, tiny_build.root)
    artifacts = {a["name"]: a for a in manifest["artifacts"]}
    built = [v for v in variants_for(recipe) if v.shipped]  # one ExecuTorch candidate: dynamic_int8
    assert list(artifacts) == [v.id for v in built] and "candidates" not in manifest
    for v in built:
        if v.shipped:
            a = artifacts[v.id]
            file = tiny_build.root / a["path"]
            assert a["path"] == v.file and a["format"] == v.format and a["parent"] == parent_of(v.id, recipe)
            assert a["sha256"] == sha256_file(file) and a["bytes"] == file.stat().st_size
    assert set(manifest["accuracy"]) == {v.id for v in variants_for(recipe)}
    assert manifest["samples"]["images"] == 6 and manifest["passed"] is True
    assert {"scikit-learn", "scikit-image", "torch", "executorch", "torchao"} <= set(manifest["versions"])
    assert artifacts["pte"]["format"] == "executorch" and artifacts["pte"]["parent"] == "fp32"
    assert artifacts["pte"]["delegation"] == json.loads(tiny_build.delegation.read_text())
    # export.method auto (the default): which method made int8.pt; no Linear of this ViT kept float
    assert artifacts["int8"]["torchscript"] == {"method": "script", "keep_float": []}
    assert all("torchscript" not in a for a in manifest["artifacts"] if a["name"] != "int8")


def test_the_schema_takes_its_variant_and_format_names_from_the_table():
    schema = mf.schema()
    item = schema["properties"]["artifacts"]["items"]["properties"]
    assert item["name"]["enum"] == [v.id for v in VARIANTS if v.shipped]
    assert set(item["format"]["enum"]) == {v.format for v in VARIANTS if v.shipped}


def test_a_manifest_naming_an_unknown_variant_is_refused_in_one_line(tiny_build, tmp_path):
    manifest = json.loads(tiny_build.manifest.read_text())
    manifest["artifacts"][0]["name"] = "int3"
    bad = tmp_path / "manifest.json"
    bad.write_text(json.dumps(manifest))
    with pytest.raises(InputError, match=r"manifest.json: artifacts/0/name: 'int3' is not one of"):
        mf.load(bad)


def test_recipe_from_manifest_rebuilds_the_resolved_recipe(tiny_build):
    manifest = json.loads(tiny_build.manifest.read_text())
    recipe = mf.recipe_from_manifest(manifest, tiny_build.root)
    assert recipe.name == "tiny" and recipe.preprocess.crop == 32
    for section in ("model", "weights", "preprocess", "quantize", "export", "mobile", "checks"):
        assert recipe.resolved()[section] == manifest["recipe"]["resolved"][section]


def test_two_manifests_of_the_same_build_are_the_same_bytes(tiny_build, tmp_path):
    import shutil

    from vitq.layout import ArtifactPaths
    from vitq.orchestration.runner import run_stage
    from vitq.recipe import load_recipe

    folder = tmp_path / "copy"
    shutil.copytree(tiny_build.root.parent.parent, folder)
    paths = ArtifactPaths.for_recipe(folder / "artifacts", "tiny")
    run_stage("manifest", load_recipe(folder / "tiny.yaml"), paths)
    assert paths.manifest.read_bytes() == tiny_build.manifest.read_bytes()
