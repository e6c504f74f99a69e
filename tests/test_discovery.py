"""vitq.orchestration.discovery: recipes come from the project's recipes/ folder and VITQ_RECIPES, builds go to VITQ_ARTIFACTS."""

from __future__ import annotations

import pytest

from vitq.errors import RecipeError
from vitq.orchestration.discovery import PROJECT_ROOT, artifacts_root, discover

from conftest import write_recipe

MINIMAL = """\
model: {source: timm, name: deit_tiny_patch16_224, kwargs: {num_classes: 10}}
weights: {random: {seed: 1}}
preprocess: {resize: 256, crop: 224, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5]}
samples: {dir: images, labels: images/labels.csv}
"""


def test_the_project_recipes_are_found_from_any_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VITQ_RECIPES", raising=False)
    assert discover()["digits"] == PROJECT_ROOT / "recipes" / "digits.yaml"


def test_recipes_come_from_vitq_recipes_folders(tmp_path, monkeypatch):
    write_recipe(tmp_path, "mine", MINIMAL)
    write_recipe(tmp_path, "_partial", "quantize: {engine: x86}\n")
    monkeypatch.setenv("VITQ_RECIPES", str(tmp_path))
    found = discover()
    assert found["mine"] == tmp_path / "mine.yaml" and "digits" in found and "_partial" not in found


def test_a_recipe_name_used_twice_is_an_error(tmp_path, monkeypatch):
    write_recipe(tmp_path, "digits", MINIMAL)
    monkeypatch.setenv("VITQ_RECIPES", str(tmp_path))
    with pytest.raises(RecipeError, match="digits.yaml: recipe name 'digits' is also used by"):
        discover()


def test_a_missing_vitq_recipes_folder_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("VITQ_RECIPES", str(tmp_path / "nowhere"))
    with pytest.raises(RecipeError, match="VITQ_RECIPES names a folder that does not exist"):
        discover()


def test_builds_go_to_vitq_artifacts_or_artifacts_here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VITQ_ARTIFACTS", raising=False)
    assert artifacts_root() == tmp_path / "artifacts"
    monkeypatch.setenv("VITQ_ARTIFACTS", "out")
    assert artifacts_root() == tmp_path / "out" and artifacts_root().is_absolute()
