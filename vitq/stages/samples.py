"""Write the held-out split of the training data as PNG files + labels.csv: the recipe's sample images."""

from __future__ import annotations

from PIL import Image

from vitq.datasets import digits
from vitq.fileio import atomic_path
from vitq.layout import ArtifactPaths
from vitq.recipe import Recipe
from vitq.samples import write_labels_csv


def run(recipe: Recipe, paths: ArtifactPaths) -> str:
    spec = recipe.weights.train
    split = digits.load_split(spec.holdout, spec.seed)
    with atomic_path(paths.samples_dir) as folder:
        folder.mkdir()
        rows = []
        for index, image, label in zip(split.held_out_index, split.held_out_images, split.held_out_labels):
            name = f"digit-{index:04d}.png"
            Image.fromarray(image, mode="L").save(folder / name, format="PNG")
            rows.append((name, (int(label),)))
        write_labels_csv(folder / paths.samples_labels.name, rows)
    return f"{len(rows)} held-out {spec.dataset} images (never trained on) -> {paths.samples_dir.name}/"
