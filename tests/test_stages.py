"""Each stage as a plain function on a tiny real timm ViT: no doit involved."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch.jit.mobile import _load_for_lite_interpreter

from conftest import write_recipe
from helpers_models import TINY_TIMM, make_images, tiny_recipe
from vitq import models
from vitq.errors import RecipeError
from vitq.layout import ArtifactPaths
from vitq.recipe import load_recipe
from vitq.runner import configure_torch
from vitq.stages import fp32, int8, lite, optimized, samples

INPUT = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def build(recipe, root, stages=(fp32, samples, int8, optimized, lite)):
    configure_torch(recipe)
    paths = ArtifactPaths.for_recipe(root, recipe.name)
    for stage in stages:
        assert isinstance(stage.run(recipe, paths), str)
    return paths


def test_fp32_stage_writes_the_seeded_weights_as_safetensors(tmp_path):
    recipe = tiny_recipe(tmp_path)
    paths = build(recipe, tmp_path / "out", [fp32])
    torch.manual_seed(7)
    expected = models.create_model(recipe).state_dict()
    saved = load_file(str(paths.fp32))
    assert saved.keys() == expected.keys()
    assert all(torch.equal(saved[k], expected[k]) for k in saved)


def test_chain_produces_int8_torchscript_an_optimized_file_and_a_loadable_lite_file(tmp_path):
    recipe = tiny_recipe(tmp_path)
    paths = build(recipe, tmp_path / "out")
    reference = models.load_fp32(recipe, paths.fp32)
    scripted = torch.jit.load(str(paths.int8))
    assert "quantized::linear_dynamic" in str(scripted.inlined_graph)
    mobile = _load_for_lite_interpreter(str(paths.lite))
    with torch.no_grad():
        want = reference(INPUT)
        for got in (scripted(INPUT), torch.jit.load(str(paths.optimized))(INPUT), mobile(INPUT)):
            assert got.shape == (3, 5)
            assert (got - want).abs().max() < 0.05 * want.abs().max()
    assert paths.lite.stat().st_size < paths.fp32.stat().st_size


def test_float16_dynamic_quantization_also_goes_through(tmp_path):
    recipe = tiny_recipe(tmp_path, extra="quantize: {dtype: float16, engine: x86}\n")
    paths = build(recipe, tmp_path / "out")
    assert _load_for_lite_interpreter(str(paths.lite))(INPUT).shape == (3, 5)


def test_trace_export_matches_eager(tmp_path):
    recipe = tiny_recipe(tmp_path, extra="export: {method: trace}\nmobile: {optimize: false}\n")
    paths = build(recipe, tmp_path / "out", [fp32, samples, int8, lite])
    assert not paths.optimized.exists()
    eager = int8.quantize_dynamic(recipe, models.load_fp32(recipe, paths.fp32))
    with torch.no_grad():
        assert torch.allclose(_load_for_lite_interpreter(str(paths.lite))(INPUT), eager(INPUT), atol=1e-5)


def test_mobile_blocklist_is_passed_to_optimize_for_mobile(tmp_path):
    recipe = tiny_recipe(tmp_path, extra="mobile: {blocklist: [REMOVE_DROPOUT, FUSE_ADD_RELU]}\n")
    build(recipe, tmp_path / "out", [fp32, int8])
    summary = optimized.run(recipe, ArtifactPaths.for_recipe(tmp_path / "out", recipe.name))
    assert "skipping FUSE_ADD_RELU, REMOVE_DROPOUT" in summary


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_file_weights_round_trip(tmp_path, suffix):
    source = tiny_recipe(tmp_path / "a")
    torch.manual_seed(123)
    state = models.create_model(source).state_dict()
    weights = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(weights))
    else:
        torch.save({"model": state}, str(weights))
    make_images(tmp_path / "b" / "images")
    recipe = load_recipe(write_recipe(tmp_path / "b", "fromfile", TINY_TIMM.format(extra="").replace(
        "{random: {seed: 7}}", f"{{file: {weights}}}")))
    paths = build(recipe, tmp_path / "out", [fp32])
    saved = load_file(str(paths.fp32))
    assert all(torch.equal(saved[k], state[k]) for k in state)


def test_missing_weight_file_names_recipe_and_field(tmp_path):
    make_images(tmp_path / "images")
    recipe = load_recipe(write_recipe(tmp_path, "nofile", TINY_TIMM.format(extra="").replace(
        "{random: {seed: 7}}", "{file: missing.safetensors}")))
    with pytest.raises(RecipeError, match=r"nofile.yaml: weights.file: file not found: .*missing.safetensors"):
        build(recipe, tmp_path / "out", [fp32])


def test_weight_file_of_another_model_is_refused(tmp_path):
    weights = tmp_path / "other.safetensors"
    save_file({"head.weight": torch.zeros(3, 3)}, str(weights))
    make_images(tmp_path / "images")
    recipe = load_recipe(write_recipe(tmp_path, "wrong", TINY_TIMM.format(extra="").replace(
        "{random: {seed: 7}}", f"{{file: {weights}}}")))
    with pytest.raises(RecipeError, match="weights.file: other.safetensors does not fit vit_tiny_patch16_224"):
        build(recipe, tmp_path / "out", [fp32])


def test_unknown_timm_model_suggests_a_name(tmp_path):
    make_images(tmp_path / "images")
    recipe = load_recipe(write_recipe(tmp_path, "typo", TINY_TIMM.format(extra="").replace(
        "vit_tiny_patch16_224", "deit_tiny_patch16_244")))
    with pytest.raises(RecipeError, match=r"model.name: unknown timm model 'deit_tiny_patch16_244'; did you mean 'deit_tiny_patch16_224'"):
        build(recipe, tmp_path / "out", [fp32])


def test_non_vit_timm_model_is_refused(tmp_path):
    make_images(tmp_path / "images")
    recipe = load_recipe(write_recipe(tmp_path, "cnn", TINY_TIMM.format(extra="").replace(
        "vit_tiny_patch16_224", "resnet18")))
    with pytest.raises(RecipeError, match="model.name: 'resnet18' is not a ViT-family model"):
        build(recipe, tmp_path / "out", [fp32])
