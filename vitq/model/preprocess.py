"""The recipe's preprocessing as a torchvision pipeline: one definition for training, evaluation and predict."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from vitq.errors import InputError
from vitq.recipe import Preprocess


def build_transform(spec: Preprocess) -> Callable[[Any], Any]:
    """PIL image -> float tensor [3, crop, crop]: resize shorter side, center crop, scale, normalize."""
    from torchvision import transforms as T

    mode = T.InterpolationMode(spec.interpolation)
    return T.Compose(
        [
            T.Lambda(lambda im: im.convert("RGB")),
            T.Resize(spec.resize if spec.resize_mode == "shorter" else (spec.resize, spec.resize), interpolation=mode),
            T.CenterCrop(spec.crop),
            T.ToTensor(),
            T.Normalize(spec.mean, spec.std),
        ]
    )


def open_image(path: Path) -> Any:
    """Open and fully decode an image, turning a missing, non-image or corrupt file into one line."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            return im.copy()
    except FileNotFoundError:
        raise InputError(path, "image file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(path, f"not a readable image ({exc.__class__.__name__})") from None


def load_batch(spec: Preprocess, paths: list[Path]) -> Any:
    """Stack preprocessed images into one float tensor [N, 3, crop, crop]."""
    import torch

    transform = build_transform(spec)
    return torch.stack([transform(open_image(p)) for p in paths])
