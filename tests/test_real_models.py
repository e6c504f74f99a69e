"""The real model families offline: DeiT and ViT with random weights, the HF ViT through tracing, hub errors.

(Sizes of the real deit_base are a benchmark, not a test: benchmarks/random_weights_build.py.)
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from vitq.errors import RecipeError
from vitq.model.datasets.photos import photo_files
from vitq.model.preprocess import build_transform
from vitq.model.runtimes import load_lite, load_pte
from vitq.recipe import load_recipe
from vitq.ship.predict import predict
from vitq.variants import variants_for

from conftest import REPO, run_doit, write_recipe
from helpers_models import build, make_images

RECIPES = REPO / "recipes"


@pytest.mark.e2e
def test_deit_tiny_with_random_weights_goes_through_the_whole_chain_and_predicts_named_classes(tmp_path):
    # The .pte of a 224-pixel DeiT takes half a minute to lower: test_distilled_deit_... covers timm DeiT's .pte
    # at 64 pixels, benchmarks/random_weights_build.py the real sizes.
    recipe = load_recipe(write_recipe(tmp_path, "deit_tiny_random", f"extends: {RECIPES / 'deit_tiny.yaml'}\n"
                                      "weights: {random: {seed: 0}}\nexecutorch: {enabled: false}\n"))
    paths = build(recipe, tmp_path / "artifacts")
    manifest = json.loads(paths.manifest.read_text())
    assert manifest["passed"] is True and manifest["weights"]["trained"] is False
    int8 = next(a for a in manifest["artifacts"] if a["name"] == "int8")
    assert manifest["recipe"]["resolved"]["export"]["method"] == "auto" and int8["torchscript"]["method"] == "script"
    assert manifest["samples"]["images"] == len(photo_files())
    lite = next(a for a in manifest["artifacts"] if a["name"] == "lite")
    assert lite["size_ratio_vs_fp32"] < 0.4  # dynamic int8 Linear weights: a fraction of fp32
    chelsea = paths.samples_dir / "chelsea.png"
    for v in variants_for(recipe):
        if v.file:
            [(_, best)] = predict(paths.file(v.id), [chelsea])
            assert len(best) == 5 and not any(name.startswith("class ") for _, name, _ in best)  # ImageNet names


HF_TINY = """\
threads: 1
model:
  source: transformers
  name: ViTForImageClassification
  kwargs: {image_size: 32, patch_size: 8, hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2,
           intermediate_size: 64, num_labels: 5}
weights: {random: {seed: 3}}
preprocess: {resize: 32, resize_mode: exact, interpolation: bilinear, crop: 32, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5]}
export: {method: trace}
samples: {dir: images, labels: images/labels.csv}
"""


@pytest.mark.e2e  # a whole (small) build in this process: ~11 s, kept out of the one-minute unit tier
def test_a_small_transformers_vit_goes_through_the_trace_path(tmp_path):
    make_images(tmp_path / "images")
    paths = build(load_recipe(write_recipe(tmp_path, "hf_tiny", HF_TINY)), tmp_path / "artifacts")
    manifest = json.loads(paths.manifest.read_text())
    assert manifest["passed"] is True
    assert manifest["accuracy"]["lite"]["agreement"] >= 0.5 and manifest["accuracy"]["lite"]["n"] == 6
    [(_, best)] = predict(paths.file("lite"), [tmp_path / "images" / "img0.jpg"])
    assert best[0][1].startswith("LABEL_")  # the config's id2label


def test_transformers_vit_cannot_be_scripted_and_says_to_trace(tmp_path):
    make_images(tmp_path / "images")
    recipe = load_recipe(write_recipe(tmp_path, "hf", HF_TINY.replace("{method: trace}", "{method: script}")))
    with pytest.raises(Exception, match="export.method: torch.jit.script failed .*try method: trace"):
        build(recipe, tmp_path / "out", ["fp32", "int8"])


@pytest.mark.e2e
def test_distilled_deit_scripts_to_a_lite_file_and_exports_to_executorch(tmp_path):
    make_images(tmp_path / "images")
    recipe = load_recipe(write_recipe(tmp_path, "distilled", """\
threads: 2
model: {source: timm, name: deit_tiny_distilled_patch16_224, kwargs: {img_size: 64, num_classes: 7, depth: 2}}
weights: {random: {seed: 0}}
preprocess: {resize: 64, crop: 64, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5]}
samples: {dir: images, labels: images/labels.csv}
"""))
    paths = build(recipe, tmp_path / "out", ["fp32", "samples", "int8", "optimized", "lite", "pte"])
    assert load_lite(paths.file("lite"))(torch.zeros(1, 3, 64, 64)).shape == (1, 7)
    assert load_pte(paths.file("pte"))(torch.zeros(2, 3, 64, 64)).shape == (2, 7)
    assert json.loads(paths.delegation.read_text())["delegated_nodes"] > 0


@pytest.mark.e2e
def test_hub_weights_unavailable_offline_is_one_line_and_writes_nothing(tmp_path, monkeypatch):
    root = tmp_path / "artifacts"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    proc = run_doit("build:deit", artifacts=root, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in output
    [line] = [text for text in output.splitlines() if "hub weights" in text]
    assert "recipes/deit.yaml: weights: hub weights timm/deit_base_patch16_224.fb_in1k are not available" in line
    assert "weights: {file: model.safetensors}" in line and "HF_HOME" in line
    assert not (root / "deit").exists() or not any((root / "deit").iterdir())


def test_hf_recipe_preprocessing_is_vit_image_processors():
    from transformers import ViTImageProcessor

    recipe = load_recipe(RECIPES / "vit_hf.yaml")
    processor = ViTImageProcessor()
    image = Image.open(photo_files()[0][0])
    ours = build_transform(recipe.preprocess)(image).numpy()
    theirs = processor(images=image, return_tensors="np")["pixel_values"][0]
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).mean() < 0.01


def test_deit_recipes_use_the_tutorials_preprocessing():
    from timm.data.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    for name in ("deit", "deit_tiny", "deit_small"):
        recipe = load_recipe(RECIPES / f"{name}.yaml")
        p = recipe.preprocess
        assert (p.resize, p.crop, p.interpolation, p.resize_mode) == (256, 224, "bicubic", "shorter")
        assert tuple(p.mean) == IMAGENET_DEFAULT_MEAN and tuple(p.std) == IMAGENET_DEFAULT_STD
        assert recipe.weights.kind == "hub" and recipe.export.method == "auto" and recipe.quantize.engine == "qnnpack"
    assert load_recipe(RECIPES / "deit.yaml").model.name == "deit_base_patch16_224"


MOBILEVIT_V2 = """\
threads: 1
model: {{source: timm, name: mobilevitv2_050, kwargs: {{num_classes: 5}}}}
weights: {{random: {{seed: 7}}}}
preprocess: {{resize: 70, crop: 64, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}}
samples: {{dir: images, labels: images/labels.csv}}
{extra}"""


@pytest.mark.e2e
def test_a_model_torchscript_cannot_save_fails_in_one_line_and_builds_with_the_ptl_chain_off(tmp_path):
    """MobileViT v2 scripts but cannot be saved (a Python function call in its attention): one line naming the
    recipe, the field and what to try, before any file; with ``mobile: {enabled: false}`` the rest builds."""
    make_images(tmp_path / "images")
    recipe = load_recipe(write_recipe(tmp_path, "mv2", MOBILEVIT_V2.format(extra="export: {method: script}\n")))
    with pytest.raises(RecipeError) as refused:
        build(recipe, tmp_path / "out", ["fp32", "samples", "int8"])
    line = str(refused.value)
    assert "\n" not in line and line.startswith(str(tmp_path / "mv2.yaml") + ": export.method: saving the scripted module failed")
    assert "Could not export Python function call" in line and "mobile: {enabled: false}" in line
    assert not (tmp_path / "out" / "mv2" / "int8.pt").exists()
    off = load_recipe(write_recipe(tmp_path, "mv2", MOBILEVIT_V2.format(extra="mobile: {enabled: false}\nexecutorch: {enabled: false}\n")))
    paths = build(off, tmp_path / "out")
    assert {v.id for v in variants_for(off)} == {"fp32", "int8_eager", "onnx_fp32", "onnx_int8"}
    assert json.loads(paths.manifest.read_text())["passed"] is True
