"""Train a model inside the build on a packaged data set: seeded, single-process, reproducible."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from vitq.errors import RecipeError
from vitq.model.datasets import digits
from vitq.model.preprocess import build_transform
from vitq.progress import Progress
from vitq.recipe import Recipe


def train(recipe: Recipe, model: torch.nn.Module) -> tuple[torch.nn.Module, float]:
    """Train ``model`` in place per ``weights.train``; return it (eval mode) and held-out top-1."""
    spec = recipe.weights.train
    assert spec is not None and spec.dataset == "digits"
    _check_classes(recipe, model, digits.NUM_CLASSES)
    split = digits.load_split(spec.holdout, spec.seed)
    x_train = _to_tensor(recipe, split.train_images)
    y_train = torch.as_tensor(split.train_labels, dtype=torch.long)
    x_test = _to_tensor(recipe, split.held_out_images)
    y_test = torch.as_tensor(split.held_out_labels, dtype=torch.long)

    generator = torch.Generator().manual_seed(spec.seed)
    steps_per_epoch = -(-len(y_train) // spec.batch_size)
    # fused: ATen's own kernel, whose square root is the CPU's IEEE instruction. The default (foreach) takes the
    # square root through MKL's vector math, which picks its code by CPU vendor and features whatever MKL_CBWR says:
    # that alone trained other digits weights on Intel and AMD machines (vitq.numerics).
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay, fused=True)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=spec.lr, total_steps=spec.epochs * steps_per_epoch, pct_start=0.15
    )
    fill = _background(recipe)
    with Progress(spec.epochs, "epoch") as progress:
        for _ in range(spec.epochs):
            model.train()
            order = torch.randperm(len(y_train), generator=generator)
            loss_sum = 0.0
            for start in range(0, len(order), spec.batch_size):
                batch = order[start : start + spec.batch_size]
                images = _shift(x_train[batch], spec.shift, fill, generator)
                loss = F.cross_entropy(model(images), y_train[batch], label_smoothing=spec.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                loss_sum += loss.item()
            if progress.shows_next():  # shown only: no grad, eval mode, no random numbers; the weights stay the same
                progress.set_postfix_str(f"loss {loss_sum / steps_per_epoch:.3f} "
                                         f"held-out {_accuracy(model, x_test, y_test):.1%}")
            progress.update(1)
    model.eval()
    return model, _accuracy(model, x_test, y_test)


def _check_classes(recipe: Recipe, model: torch.nn.Module, wanted: int) -> None:
    """A head of another size would fail deep inside the loss (a target out of bounds): say it in one line."""
    from vitq.model.logits import LogitsOnly
    from vitq.model.networks import example_input

    with torch.no_grad():  # eval mode: no random numbers are drawn, so the trained weights stay the same
        classes = model.eval()(example_input(recipe)).shape[-1]
    if classes != wanted:
        field = "num_labels" if isinstance(model, LogitsOnly) else "num_classes"
        raise RecipeError(recipe.path, f"model.kwargs.{field}", f"{recipe.weights.train.dataset} has {wanted} "
                          f"classes but {recipe.model.name} has {classes} outputs; set {field}: {wanted}")


def _accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 on a held-out set, in eval mode without gradients; the model is left in the mode it was in."""
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return (model(images).argmax(1) == labels).float().mean().item()
    finally:
        model.train(training)


def _to_tensor(recipe: Recipe, images: Any) -> torch.Tensor:
    """uint8 8x8 images -> the same tensors the sample PNGs give through the recipe's preprocessing."""
    from PIL import Image

    transform = build_transform(recipe.preprocess)
    return torch.stack([transform(Image.fromarray(a, mode="L")) for a in images])


def _background(recipe: Recipe) -> torch.Tensor:
    """The normalized value of a black pixel, per channel: what shifted-in borders are filled with."""
    mean = torch.tensor(recipe.preprocess.mean).view(1, 3, 1, 1)
    std = torch.tensor(recipe.preprocess.std).view(1, 3, 1, 1)
    return -mean / std


def _shift(images: torch.Tensor, pixels: int, fill: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random translation by up to ``pixels`` (one offset per batch): cheap augmentation that generalizes."""
    if pixels == 0:
        return images
    n, c, h, w = images.shape
    canvas = fill.expand(n, c, h + 2 * pixels, w + 2 * pixels).clone()
    canvas[:, :, pixels : pixels + h, pixels : pixels + w] = images
    dy, dx = torch.randint(0, 2 * pixels + 1, (2,), generator=generator).tolist()
    return canvas[:, :, dy : dy + h, dx : dx + w]
