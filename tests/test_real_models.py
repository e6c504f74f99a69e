"""The real model families, offline: DeiT and ViT with random weights, the HF ViT through tracing, hub errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO, run_doit, write_recipe
from helpers_models import make_images
from vitq.datasets.photos import photo_files
from vitq.layout import ArtifactPaths
from vitq.preprocess import build_transform
from vitq.recipe import load_recipe
from vitq.runner import configure_torch
from vitq.stages import fp32, int8, lite, optimized, samples

RECIPES = REPO / "recipes"
VARIANT_FILES = ("fp32.safetensors", "int8.pt", "int8.optimized.pt", "int8.ptl", "fp32.onnx", "int8.onnx")


def random_variant(folder, base: str, name: str) -> None:
    write_recipe(folder, name, f"extends: {RECIPES / base}\nweights: {{random: {{seed: 0}}}}\n")


def predict(artifact, *images) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vitq.cli", "predict", str(artifact), *map(str, images)],
                          capture_output=True, text=True, timeout=300)


def test_deit_tiny_with_random_weights_goes_through_the_whole_chain_and_predicts_named_classes(tmp_path):
    recipes, root = tmp_path / "recipes", tmp_path / "artifacts"
    random_variant(recipes, "deit_tiny.yaml", "deit_tiny_random")
    run_doit("build:deit_tiny_random", recipes=recipes, artifacts=root)
    out = root / "deit_tiny_random"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["passed"] is True and manifest["weights"]["trained"] is False
    assert manifest["recipe"]["resolved"]["export"]["method"] == "script"
    assert manifest["samples"]["images"] == len(photo_files())
    chelsea = out / "samples" / "chelsea.png"
    for name in VARIANT_FILES:
        proc = predict(out / name, chelsea)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert lines[0].endswith("chelsea.png:") and len(lines) == 6
        assert all(line.strip()[0] in "12345" and "(" in line and "%" in line for line in lines[1:])
        assert not any(line.split(". ", 1)[1].startswith("class ") for line in lines[1:])  # ImageNet names


def test_deit_base_random_lite_file_is_about_a_quarter_of_fp32_and_passes_the_onnx_gate(tmp_path):
    recipes, root = tmp_path / "recipes", tmp_path / "artifacts"
    random_variant(recipes, "deit.yaml", "deit_random")
    run_doit("build:deit_random", recipes=recipes, artifacts=root)
    manifest = json.loads((root / "deit_random" / "manifest.json").read_text())
    artifacts = {a["name"]: a for a in manifest["artifacts"]}
    print(f"deit_base fp32 {artifacts['fp32']['bytes']} B -> lite {artifacts['lite']['bytes']} B "
          f"({artifacts['lite']['size_ratio_vs_fp32']:.3f}x)")
    assert artifacts["lite"]["size_ratio_vs_fp32"] <= 0.27
    onnx_checks = [c for c in manifest["checks"] if c["name"].startswith("onnx_fp32.")]
    assert onnx_checks and all(c["passed"] is True for c in onnx_checks)


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


def test_a_small_transformers_vit_goes_through_the_trace_path(tmp_path):
    recipes, root = tmp_path / "recipes", tmp_path / "artifacts"
    make_images(recipes / "images")
    write_recipe(recipes, "hf_tiny", HF_TINY)
    run_doit("build:hf_tiny", recipes=recipes, artifacts=root)
    manifest = json.loads((root / "hf_tiny" / "manifest.json").read_text())
    assert manifest["passed"] is True
    lite = manifest["accuracy"]["lite"]
    assert lite["agreement"] >= 0.5 and lite["n"] == 6
    proc = predict(root / "hf_tiny" / "int8.ptl", recipes / "images" / "img0.jpg")
    assert proc.returncode == 0 and "LABEL_" in proc.stdout  # the config's id2label


def test_transformers_vit_cannot_be_scripted_and_says_to_trace(tmp_path):
    make_images(tmp_path / "images")
    recipe = load_recipe(write_recipe(tmp_path, "hf", HF_TINY.replace("{method: trace}", "{method: script}")))
    configure_torch(recipe)
    paths = ArtifactPaths.for_recipe(tmp_path / "out", recipe.name)
    fp32.run(recipe, paths)
    with pytest.raises(Exception, match="export.method: torch.jit.script failed .*try method: trace"):
        int8.run(recipe, paths)


def test_distilled_deit_scripts_to_a_lite_file(tmp_path):
    make_images(tmp_path / "images")
    recipe = load_recipe(write_recipe(tmp_path, "distilled", """\
threads: 2
model: {source: timm, name: deit_tiny_distilled_patch16_224, kwargs: {img_size: 64, num_classes: 7}}
weights: {random: {seed: 0}}
preprocess: {resize: 64, crop: 64, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5]}
samples: {dir: images, labels: images/labels.csv}
"""))
    configure_torch(recipe)
    paths = ArtifactPaths.for_recipe(tmp_path / "out", recipe.name)
    for stage in (fp32, samples, int8, optimized, lite):
        stage.run(recipe, paths)
    from torch.jit.mobile import _load_for_lite_interpreter

    assert _load_for_lite_interpreter(str(paths.lite))(torch.zeros(1, 3, 64, 64)).shape == (1, 7)


def test_hub_weights_unavailable_offline_is_one_line_and_writes_nothing(tmp_path, monkeypatch):
    root = tmp_path / "artifacts"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    proc = run_doit("build:deit", artifacts=root, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in output
    [line] = [l for l in output.splitlines() if "hub weights" in l]
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
        assert recipe.weights.kind == "hub" and recipe.export.method == "script" and recipe.quantize.engine == "qnnpack"
    assert load_recipe(RECIPES / "deit.yaml").model.name == "deit_base_patch16_224"
