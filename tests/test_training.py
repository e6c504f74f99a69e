"""vitq.model.training called directly: a one-epoch digits training of a very small ViT is the same weights every time
(and another seed gives others), a model whose head does not fit the data set is one line naming the field, and
the tensors it trains on are exactly what the sample PNGs give through the recipe's preprocessing."""

from __future__ import annotations

import pytest
import torch

from vitq.errors import RecipeError, display_path
from vitq.layout import ArtifactPaths
from vitq.model import networks
from vitq.model.datasets import digits
from vitq.model.preprocess import load_batch
from vitq.model.samples import read_labels
from vitq.model.torch_setup import configure_torch
from vitq.model.training import _to_tensor, train
from vitq.orchestration.runner import run_stage
from vitq.recipe import load_recipe

from conftest import write_recipe

TINY_DIGITS = """\
threads: 1
model:
  source: timm
  name: vit_tiny_patch16_224
  kwargs: {{img_size: 32, patch_size: 8, embed_dim: 16, depth: 1, num_heads: 2, num_classes: {classes}}}
weights: {{train: {{dataset: digits, epochs: 1, holdout: {holdout}, seed: {seed}}}}}
preprocess: {{resize: 32, crop: 32, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5]}}
samples: held_out
"""


def digits_recipe(folder, name="digits1", classes=10, holdout=0.9, seed=0):
    """1 epoch on a tenth of the digits (the rest held out): a fraction of a second."""
    return load_recipe(write_recipe(folder, name, TINY_DIGITS.format(classes=classes, holdout=holdout, seed=seed)))


def trained(recipe):
    """What the fp32 stage does (seed, create, train), always from the same initial weights: the model, its
    weights and the held-out accuracy."""
    torch.manual_seed(0)
    model, accuracy = train(recipe, networks.create_model(recipe))
    return model, {k: v.clone() for k, v in model.state_dict().items()}, accuracy


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two trainings of one recipe, one of the same with another seed, as the fp32 stage runs them (torch set up
    by the recipe: one thread, deterministic algorithms); the weights before training."""
    folder = tmp_path_factory.mktemp("training")
    recipe = digits_recipe(folder)
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    configure_torch(recipe)
    try:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            initial = networks.create_model(recipe).state_dict()
            results = initial, trained(recipe), trained(recipe), trained(digits_recipe(folder, "seed1", seed=1))
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    return results


def test_training_twice_gives_the_same_weights_and_accuracy(runs):
    _, (_, first, acc1), (_, second, acc2), _ = runs
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert acc1 == acc2


def test_training_changes_every_trainable_tensor_and_leaves_the_model_in_eval_mode(runs):
    initial, (model, weights, accuracy), _, _ = runs
    assert not model.training
    assert all(not torch.equal(initial[k], weights[k]) for k in initial if initial[k].is_floating_point())
    assert 0.0 <= accuracy <= 1.0
    assert all(torch.isfinite(v).all() for v in weights.values())


def test_another_training_seed_gives_other_weights_from_the_same_start(runs):
    """weights.train.seed picks the split and the batch order (the fp32 stage also seeds the initial weights)."""
    _, (_, first, _), _, (_, other_seed, _) = runs
    assert not all(torch.equal(first[k], other_seed[k]) for k in first)


def test_a_head_of_another_size_is_one_line_naming_num_classes_before_any_training(tmp_path):
    recipe = digits_recipe(tmp_path, classes=5)
    torch.manual_seed(0)
    model = networks.create_model(recipe)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(RecipeError) as info:
        train(recipe, model)
    assert str(info.value) == (f"{display_path(recipe.path)}: model.kwargs.num_classes: digits has 10 classes but "
                               "vit_tiny_patch16_224 has 5 outputs; set num_classes: 10")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_transformers_head_of_another_size_names_num_labels(tmp_path):
    from transformers import ViTConfig, ViTForImageClassification

    recipe = digits_recipe(tmp_path, classes=10)
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=32, num_labels=3)
    with pytest.raises(RecipeError) as info:
        train(recipe, networks.LogitsOnly(ViTForImageClassification(config)))
    assert info.value.field == "model.kwargs.num_labels" and str(info.value).endswith("set num_labels: 10")
    assert "\n" not in str(info.value)


def test_the_training_tensors_are_what_the_sample_pngs_give_through_the_recipes_preprocessing(tmp_path):
    """The model is trained on what it is evaluated on: the same images, decoded from the PNGs the samples stage
    writes, preprocessed the same way (resize, crop, normalize), to the bit."""
    recipe = digits_recipe(tmp_path, holdout=0.03)
    paths = ArtifactPaths.for_recipe(tmp_path / "artifacts", recipe.name)
    run_stage("samples", recipe, paths)
    split = digits.load_split(recipe.weights.train.holdout, recipe.weights.train.seed)
    rows = read_labels(paths.samples_labels)
    assert [name for name, _ in rows] == [f"digit-{i:04d}.png" for i in split.held_out_index]
    assert [labels[0] for _, labels in rows] == split.held_out_labels.tolist()
    from_pngs = load_batch(recipe.preprocess, [paths.samples_dir / name for name, _ in rows])
    in_training = _to_tensor(recipe, split.held_out_images)
    assert in_training.shape == (len(rows), 3, 32, 32) and in_training.dtype == torch.float32
    assert torch.equal(in_training, from_pngs)
    # 8x8 digits were upscaled to the crop, gray in all three channels, normalized to about [-1, 1]
    assert torch.equal(in_training[:, 0], in_training[:, 2])
    assert in_training.min() < -0.9 and in_training.max() > 0.9
