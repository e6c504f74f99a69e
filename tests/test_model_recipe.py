"""vitq.model.model_recipe and ``vitq new``: a recipe with the model's own preprocessing, that validates as written,
never overwrites, and names an unknown model with a did-you-mean."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from vitq.errors import VitqError
from vitq.model.model_recipe import model_section, preprocess_section, recipe_text
from vitq.recipe import load_recipe


def test_a_timm_model_gets_its_pretrained_configs_evaluation_transform():
    """mobilevit_s: 256 pixels at crop_pct 0.9 (resize 284), bicubic, no normalization (mean 0, std 1)."""
    assert preprocess_section(model_section("mobilevit_s")) == {
        "resize": 284, "resize_mode": "shorter", "crop": 256, "interpolation": "bicubic",
        "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}
    assert preprocess_section(model_section("efficientformer_l1"))["resize"] == 235  # 224 / 0.95


def test_a_transformers_folder_gets_its_image_processors_config(tmp_path):
    from transformers import ViTImageProcessor

    ViTImageProcessor(size={"height": 96, "width": 96}, image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.2, 0.2],
                      resample=2).save_pretrained(tmp_path / "my-vit")
    model = model_section(str(tmp_path / "my-vit"))
    assert model == {"source": "transformers", "name": str(tmp_path / "my-vit")}
    assert preprocess_section(model) == {"resize": 96, "resize_mode": "exact", "crop": 96, "interpolation": "bilinear",
                                         "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.2, 0.2]}


def test_an_unknown_timm_name_gets_a_did_you_mean():
    with pytest.raises(VitqError, match="mobilevit_ss: unknown timm model; did you mean 'mobilevit_s'"):
        model_section("mobilevit_ss")


@pytest.mark.e2e
def test_vitq_new_writes_a_recipe_that_validates_and_never_overwrites(tmp_path):
    target = tmp_path / "mvit.yaml"
    command = [sys.executable, "-m", "vitq.cli", "new", "mobilevit_s", "-o", str(target)]
    first = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0 and first.stderr == "", first.stderr
    recipe = load_recipe(target)
    assert (recipe.model.name, recipe.weights.kind, recipe.preprocess.crop) == ("mobilevit_s", "hub", 256)
    assert yaml.safe_load(target.read_text()) == yaml.safe_load(recipe_text("mobilevit_s").split("\n", 2)[2])
    target.write_text(target.read_text() + "# mine\n")
    again = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "never overwrites" in again.stderr
    assert target.read_text().endswith("# mine\n")
