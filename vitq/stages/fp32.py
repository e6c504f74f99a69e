"""The reference float model: weights from hub, a local file, in-build training or a seeded random init."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from vitq.fileio import atomic_path
from vitq.model import networks
from vitq.model.labels import METADATA_KEY, class_names_for
from vitq.recipe import Recipe


def run(recipe: Recipe, inputs: dict[str, Path], outputs: dict[str, Path]) -> str:
    kind = recipe.weights.kind
    note = ""
    if kind == "hub":
        model = networks.pretrained_model(recipe)
    else:
        torch.manual_seed(recipe.weights.random.seed if kind == "random" else _train_seed(recipe))
        model = networks.create_model(recipe)
        if kind == "file":
            model = networks.load_weights_file(recipe, model, inputs["weights"])
        elif kind == "train":
            from vitq.model.training import train

            model, accuracy = train(recipe, model)
            note = f", trained {recipe.weights.train.epochs} epochs, held-out top-1 {accuracy:.1%}"
        else:
            note = ", random init (untrained: accuracy is not meaningful)"
    save_fp32(model, recipe, outputs["fp32"])
    params = sum(p.numel() for p in model.parameters())
    return f"{recipe.model.source}:{recipe.model.name} {params / 1e6:.2f}M params, weights={kind}{note}"


def save_fp32(model: torch.nn.Module, recipe: Recipe, out: Path) -> None:
    target = model.model if isinstance(model, networks.LogitsOnly) else model
    state = _unshared(target.state_dict())
    with torch.no_grad():
        classes = model(networks.example_input(recipe)).shape[-1]
    # One metadata key only: safetensors keeps metadata in a hash map, so the order of several keys
    # in the file header varies from run to run, and with it the file's sha256.
    info = {"recipe": recipe.name, "model": recipe.section("model")["model"],
            "class_names": class_names_for(recipe, model, classes)}
    metadata = {METADATA_KEY: json.dumps(info, sort_keys=True)}
    with atomic_path(out) as tmp:
        save_file(state, str(tmp), metadata=metadata)


def _unshared(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict with a copy of every tensor whose memory an earlier one already holds: safetensors refuses
    shared tensors (timm's CoaT shares one conv between blocks), and each name must load on its own."""
    out, seen = {}, set()
    for name, value in state.items():
        value = value.detach().contiguous()
        storage = value.untyped_storage().data_ptr()
        out[name] = value.clone() if storage in seen else value
        seen.add(storage)
    return out


def _train_seed(recipe: Recipe) -> int:
    return recipe.weights.train.seed if recipe.weights.train else 0
