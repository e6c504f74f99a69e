"""vitq.model.labels: the class names a report and ``vitq predict`` show, by where the model comes from, and reading them
back from a built fp32 file."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file, save_file

from vitq.model.labels import METADATA_KEY, class_names_for, read_class_names
from vitq.model.logits import LogitsOnly
from vitq.recipe import load_recipe

from conftest import write_recipe
from helpers_models import TINY_TIMM, make_images

DIGITS = TINY_TIMM.replace("num_classes: 5", "num_classes: 10").replace(
    "{{random: {{seed: 7}}}}", "{{train: {{dataset: digits}}}}").replace(
    "{{dir: images, labels: images/labels.csv}}", "held_out")


def recipe(tmp_path, text=TINY_TIMM):
    make_images(tmp_path / "images")
    return load_recipe(write_recipe(tmp_path, "r", text.format(extra="")))


def test_a_digits_trained_model_names_its_classes_by_digit(tmp_path):
    assert class_names_for(recipe(tmp_path, DIGITS), torch.nn.Identity(), 10) == [str(i) for i in range(10)]


def test_an_imagenet_head_gets_imagenets_names(tmp_path):
    names = class_names_for(recipe(tmp_path), torch.nn.Identity(), 1000)
    assert len(names) == 1000 and not any(name.startswith("class ") for name in names)
    assert names[0] == "tench, Tinca tinca" and names[281] == "tabby, tabby cat"


def test_any_other_head_is_numbered(tmp_path):
    assert class_names_for(recipe(tmp_path), torch.nn.Identity(), 5) == [f"class {i}" for i in range(5)]
    # random weights with a 10-class head are not digits
    assert class_names_for(recipe(tmp_path), torch.nn.Identity(), 10)[9] == "class 9"


def test_a_transformers_model_uses_its_configs_labels_when_they_fit(tmp_path):
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=32, id2label={0: "cat", 1: "dog", 2: "bird"}, label2id={})
    model = LogitsOnly(ViTForImageClassification(config))
    r = recipe(tmp_path)
    assert class_names_for(r, model, 3) == ["cat", "dog", "bird"]
    assert class_names_for(r, model, 4) == ["class 0", "class 1", "class 2", "class 3"]  # labels of another head


def test_the_built_fp32_file_carries_the_names_and_a_bare_file_has_none(tiny_build, tmp_path):
    assert read_class_names(tiny_build.file("fp32")) == [f"class {i}" for i in range(5)]
    info = json.loads(_metadata(tiny_build.file("fp32"))[METADATA_KEY])
    assert info["recipe"] == "tiny" and info["model"]["name"] == "vit_tiny_patch16_224"
    bare = tmp_path / "bare.safetensors"
    save_file(load_file(str(tiny_build.file("fp32"))), str(bare))
    assert read_class_names(bare) is None
    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(1)}, str(other), metadata={"format": "pt"})
    assert read_class_names(other) is None


def _metadata(path):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        return fh.metadata()
