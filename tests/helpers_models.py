"""A tiny ViT recipe and sample folder for fast, real stage tests (random weights, 5 classes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from vitq.recipe import Recipe, load_recipe

from conftest import write_recipe

TINY_TIMM = """\
threads: 1
model:
  source: timm
  name: vit_tiny_patch16_224
  kwargs: {{img_size: 32, patch_size: 8, embed_dim: 32, depth: 1, num_heads: 2, num_classes: 5}}
weights: {{random: {{seed: 7}}}}
preprocess: {{resize: 36, crop: 32, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}}
samples: {{dir: images, labels: images/labels.csv}}
{extra}"""


def make_images(folder: Path, count: int = 6, classes: int = 5) -> Path:
    """Deterministic noise photos of assorted sizes and modes, with a labels.csv."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = ["file,label"]
    for i in range(count):
        size = (40 + 7 * i, 33 + 5 * i)
        pixels = rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)
        image = Image.fromarray(pixels, mode="RGB")
        if i % 3 == 2:
            image = image.convert("L")
        name = f"img{i}.png" if i % 2 else f"img{i}.jpg"
        image.save(folder / name)
        rows.append(f"{name},{i % classes}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder


def tiny_recipe(folder: Path, name: str = "tiny", extra: str = "") -> Recipe:
    make_images(folder / "images")
    return load_recipe(write_recipe(folder, name, TINY_TIMM.format(extra=extra)))


def build(recipe: Recipe, root: Path, stages: list[str] | None = None):
    """Run the recipe's stages in this process, as vitq.runner does (no doit): returns its ArtifactPaths."""
    from vitq.layout import ArtifactPaths
    from vitq.pipeline import stages_for
    from vitq.runner import run_stage

    paths = ArtifactPaths.for_recipe(root, recipe.name)
    for stage in stages_for(recipe):
        if stages is None or stage.name in stages:
            summary, _, _ = run_stage(stage.name, recipe, paths)
            assert isinstance(summary, str) and summary
    return paths
