"""Build the recipe's network and fill it with weights (imported by stages only: it imports torch).

Factories are keyed by ``model.source``; each returns an eval-mode ``nn.Module`` whose forward takes
a float image batch ``[N, 3, H, W]`` and returns logits ``[N, classes]``.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import torch

from vitq.errors import RecipeError, VitqError
from vitq.recipe import Recipe

# transformers model classes accepted as ``model.name`` when the config comes from ``kwargs`` alone
# (no hub lookup), e.g. for random or local-file weights.
TRANSFORMERS_CLASSES = ("ViTForImageClassification",)


def create_model(recipe: Recipe) -> Any:
    """The architecture with freshly initialised weights (seed the RNG before calling)."""
    if recipe.model.source == "timm":
        return _create_timm(recipe, pretrained=False)
    return _create_transformers(recipe, pretrained=False)


def pretrained_model(recipe: Recipe) -> Any:
    """The architecture with the hub's weights, through the Hugging Face cache (HF_HOME, HF_HUB_OFFLINE)."""
    try:
        if recipe.model.source == "timm":
            return _create_timm(recipe, pretrained=True)
        return _create_transformers(recipe, pretrained=True)
    except VitqError:
        raise
    except Exception as exc:  # network, cache and hub errors come in many types
        raise RecipeError(
            recipe.path,
            "weights",
            f"hub weights {hub_id(recipe)} are not available ({_first_line(exc)[:120]}); supply them as a "
            "local file (weights: {file: model.safetensors}) or populate the Hugging Face cache "
            "(HF_HOME) on a machine with network",
        ) from None


def hub_id(recipe: Recipe) -> str:
    """Where hub weights come from: the Hugging Face repo timm or transformers would download."""
    if recipe.model.source == "transformers":
        return recipe.model.name
    import timm

    cfg = timm.models.get_pretrained_cfg(recipe.model.name) if timm.is_model(recipe.model.name) else None
    return getattr(cfg, "hf_hub_id", None) or f"timm/{recipe.model.name}"


def load_weights_file(recipe: Recipe, model: Any, path: Path) -> Any:
    """Load a local .safetensors, or a .pth/.pt with ``torch.load(weights_only=True)``, strictly."""
    if not path.is_file():
        raise RecipeError(recipe.path, "weights.file", f"file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RecipeError(recipe.path, "weights.file", f"cannot read {path.name}: {_first_line(exc)}") from None
    if isinstance(state, dict):
        for key in ("state_dict", "model"):
            if isinstance(state.get(key), dict):
                state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise RecipeError(recipe.path, "weights.file", f"{path.name} does not hold a state dict of tensors")
    target = model.model if isinstance(model, LogitsOnly) else model
    try:
        target.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise RecipeError(recipe.path, "weights.file", f"{path.name} does not fit {recipe.model.name}: {_first_line(exc)}") from None
    return model.eval()


def _create_timm(recipe: Recipe, pretrained: bool) -> Any:
    import timm

    name = recipe.model.name
    if not timm.is_model(name):
        guess = difflib.get_close_matches(name, timm.list_models(), n=1)
        hint = f"; did you mean '{guess[0]}'?" if guess else ""
        raise RecipeError(recipe.path, "model.name", f"unknown timm model '{name}'{hint}")
    if not name.startswith(("vit_", "deit_", "deit3_")):
        raise RecipeError(recipe.path, "model.name", f"'{name}' is not a ViT-family model (vit_*, deit_*, deit3_*)")
    try:
        model = timm.create_model(name, pretrained=pretrained, **recipe.model.kwargs)
    except TypeError as exc:
        raise RecipeError(recipe.path, "model.kwargs", _first_line(exc)) from None
    return model.eval()


class LogitsOnly(torch.nn.Module):
    """transformers models return an output object; mobile runtimes want a plain logits tensor."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).logits


def _create_transformers(recipe: Recipe, pretrained: bool) -> Any:
    from transformers import ViTConfig, ViTForImageClassification

    name, overrides = recipe.model.name, dict(recipe.model.kwargs)
    if pretrained:
        model = ViTForImageClassification.from_pretrained(name, **overrides)
    elif name in TRANSFORMERS_CLASSES:
        try:
            model = ViTForImageClassification(ViTConfig(**overrides))
        except (TypeError, ValueError) as exc:
            raise RecipeError(recipe.path, "model.kwargs", _first_line(exc)) from None
    else:
        try:
            config = ViTConfig.from_pretrained(name, **overrides)
        except Exception as exc:
            raise RecipeError(
                recipe.path,
                "model.name",
                f"cannot get the config of '{name}' ({_first_line(exc)}); use name: ViTForImageClassification "
                "with the config in model.kwargs, or populate the Hugging Face cache",
            ) from None
        model = ViTForImageClassification(config)
    model.eval()
    return LogitsOnly(model).eval()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else exc.__class__.__name__


def load_fp32(recipe: Recipe, path: Path) -> Any:
    """The reference float model: the recipe's architecture with the weights of the fp32 artifact."""
    from safetensors.torch import load_file

    model = create_model(recipe)
    target = model.model if isinstance(model, LogitsOnly) else model
    target.load_state_dict(load_file(str(path)), strict=True)
    return model.eval()


def example_input(recipe: Recipe) -> torch.Tensor:
    """A batch of one image of the recipe's input size, for tracing and smoke runs."""
    size = recipe.preprocess.crop
    return torch.zeros(1, 3, size, size)
