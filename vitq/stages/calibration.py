"""Materialise the recipe's calibration images under artifacts/<recipe>/calibration/ (an images.txt beside them).

The static int8 program measures its activation ranges on them and mixed precision ranks layers on them, so they
must not be the images the build is judged on: the training split of a recipe that trains (the held-out samples
are the rest), or the first ``count`` images of a folder, refused when any of them is one of the sample images.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from PIL import Image

from vitq.errors import RecipeError
from vitq.fileio import atomic_path, sha256_file
from vitq.layout import CALIBRATION, SAMPLES
from vitq.model.datasets import digits
from vitq.model.preprocess import open_image
from vitq.model.samples import read_samples
from vitq.recipe import Recipe


def run(recipe: Recipe, inputs: dict[str, Path], outputs: dict[str, Path]) -> str:
    listing = outputs[CALIBRATION]
    with atomic_path(listing.parent) as folder:
        folder.mkdir()
        if recipe.calibration.split == "train":
            names, what = _write_train(recipe, folder), f"{recipe.weights.train.dataset} training images"
        else:
            names, what = _copy_folder(recipe, inputs, folder), f"images from {recipe.calibration.dir}"
        (folder / listing.name).write_text("".join(f"{name}\n" for name in names), encoding="utf-8")
    return f"{len(names)} {what} -> {listing.parent.name}/ (never the samples)"


def _write_train(recipe: Recipe, folder: Path) -> list[str]:
    """The first images of the training split: by construction none of the held-out samples."""
    spec = recipe.weights.train
    split = digits.load_split(spec.holdout, spec.seed)
    names = []
    for index, image in list(zip(split.train_index, split.train_images, strict=True))[:recipe.calibration.count]:
        name = f"train-{index:04d}.png"
        Image.fromarray(image, mode="L").save(folder / name, format="PNG")
        names.append(name)
    return names


def _copy_folder(recipe: Recipe, inputs: dict[str, Path], folder: Path) -> list[str]:
    source = Path(recipe.calibration.dir)
    if not source.is_dir():
        raise RecipeError(recipe.path, "calibration.dir", f"folder not found: {source}")
    images = {key.removeprefix("image:"): path for key, path in inputs.items() if key.startswith("image:")}
    if not images:
        raise RecipeError(recipe.path, "calibration.dir", f"no images in {source}")
    samples = {sha256_file(s.path): s.path.name for s in read_samples(inputs[SAMPLES])}
    for name, path in sorted(images.items()):
        open_image(path)  # a corrupt or non-image file is one line naming it
        same = samples.get(sha256_file(path))
        if same is not None:
            raise RecipeError(recipe.path, "calibration.dir", f"{name} is the sample image {same}: calibration must "
                              "not see the images the build is judged on")
        shutil.copyfile(path, folder / name)
    return sorted(images)
