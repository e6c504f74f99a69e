"""Materialise the recipe's sample images + labels.csv under artifacts/<recipe>/samples/.

Either the held-out split of the training data (written as PNG), scikit-image's photos, or a copy of the
user's folder (the ``labels`` and ``image:<name>`` inputs), so evaluation, ``vitq verify`` and a release all
use the very files the build was checked on.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from PIL import Image

from vitq.errors import InputError, RecipeError
from vitq.fileio import atomic_path
from vitq.layout import SAMPLES
from vitq.model.datasets import digits
from vitq.model.datasets.photos import photo_files
from vitq.model.preprocess import open_image
from vitq.model.samples import read_labels, write_labels_csv
from vitq.recipe import Recipe

Rows = list[tuple[str, tuple[int, ...]]]


def run(recipe: Recipe, inputs: dict[str, Path], outputs: dict[str, Path]) -> str:
    labels_out = outputs[SAMPLES]
    with atomic_path(labels_out.parent) as folder:
        folder.mkdir()
        if recipe.samples.builtin == "held_out":
            rows, what = _write_held_out(recipe, folder), f"held-out {recipe.weights.train.dataset} images (never trained on)"
        elif recipe.samples.builtin == "photos":
            rows, what = _copy_photos(folder), "photographs shipped by scikit-image"
        else:
            rows, what = _copy_folder(recipe, inputs, folder), f"images from {recipe.samples.dir}"
        write_labels_csv(folder / labels_out.name, rows)
    return f"{len(rows)} {what} -> {labels_out.parent.name}/"


def _write_held_out(recipe: Recipe, folder: Path) -> Rows:
    spec = recipe.weights.train
    split = digits.load_split(spec.holdout, spec.seed)
    rows = []
    for index, image, label in zip(split.held_out_index, split.held_out_images, split.held_out_labels, strict=True):
        name = f"digit-{index:04d}.png"
        Image.fromarray(image, mode="L").save(folder / name, format="PNG")
        rows.append((name, (int(label),)))
    return rows


def _copy_photos(folder: Path) -> Rows:
    rows = []
    for path, classes in photo_files():
        shutil.copyfile(path, folder / path.name)
        rows.append((path.name, classes))
    return rows


def _copy_folder(recipe: Recipe, inputs: dict[str, Path], folder: Path) -> Rows:
    source, labels = Path(recipe.samples.dir), Path(recipe.samples.labels)
    if not source.is_dir():
        raise RecipeError(recipe.path, "samples.dir", f"folder not found: {source}")
    rows = read_labels(inputs.get("labels", labels))
    if not rows:
        raise InputError(labels, "labels file lists no images")
    for name, _ in rows:
        image = inputs.get(f"image:{name}")
        if "/" in name or name.startswith(".") or (image is not None and not image.resolve().is_relative_to(source.resolve())):
            raise InputError(labels, f"{name}: must name a file directly inside {source}")
        if image is None or not image.is_file():
            raise InputError(labels, f"{name}: image file not found in {source}")
        open_image(image)  # refuse a corrupt or non-image file now, naming it
        shutil.copyfile(image, folder / name)
    return rows
