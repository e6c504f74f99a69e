"""A tiny ViT recipe and sample folder for fast, real stage tests (random weights, 5 classes)."""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydantic import BaseModel

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


class RecordingRecipe:
    """Stands in for a Recipe and records every field a stage reads (dotted), so undeclared reads show."""

    def __init__(self, target: Any, log: set[str], prefix: str = ""):
        self._target, self._log, self._prefix = target, log, prefix

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        dotted = f"{self._prefix}{name}"
        if name in ("path", "source"):  # where the recipe lives: for error messages, not for bytes
            return value
        if name == "section":
            return lambda *names: (self._log.update(f"{self._prefix}{n}" for n in names), value(*names))[1]
        if name == "resolved":
            return lambda: (self._log.add("*"), value())[1]
        if name == "pte_candidates":  # a property of what the recipe lists and whether it calibrates
            self._log.update({"executorch.quantize", "calibration"})
            return value
        if isinstance(getattr(type(self._target), name, None), property):  # reads what the property reads
            return getattr(type(self._target), name).fget(self)
        if isinstance(value, BaseModel):
            return RecordingRecipe(value, self._log, dotted + ".")
        self._log.add(dotted)
        return value


class FieldReads(dict):
    """Stage name -> the recipe fields it read, for the recipe the stages ran on."""

    recipe: Recipe


@contextlib.contextmanager
def recording_field_reads(recipe: Recipe) -> Iterator[FieldReads]:
    """While open, every stage module's ``run`` (as the runner calls it) gets a RecordingRecipe of the recipe it
    was given; what each stage read lands in the yielded FieldReads."""
    from vitq.orchestration.pipeline import STAGES

    reads = FieldReads()
    reads.recipe = recipe
    patched = []
    for code in dict.fromkeys(stage.module for stage in STAGES):  # the ExecuTorch candidates share one module
        module = importlib.import_module(code)
        names = [stage.name for stage in STAGES if stage.module == code]

        def run(given, inputs, outputs, _run=module.run, _names=names):
            name = next((n for n in _names if n in outputs), _names[0])  # a variant stage writes its own id
            return _run(RecordingRecipe(given, reads.setdefault(name, set())), inputs, outputs)

        patched.append((module, module.run))
        module.run = run
    try:
        yield reads
    finally:
        for module, original in patched:
            module.run = original


def undeclared_reads(reads: dict[str, set[str]]) -> dict[str, list[str]]:
    """Stage name -> the fields it read but does not declare in the pipeline (empty when all is declared)."""
    from vitq.orchestration.pipeline import stage_named

    found = {}
    for name, fields in reads.items():
        declared = stage_named(name).fields
        extra = sorted(f for f in fields if "*" not in declared
                       and not any(f == d or f.startswith(d + ".") for d in declared))
        if extra:
            found[name] = extra
    return found


def build(recipe: Recipe, root: Path, stages: list[str] | None = None):
    """Run the recipe's stages in this process, as vitq.orchestration.runner does (no doit): returns its ArtifactPaths."""
    from vitq.layout import ArtifactPaths
    from vitq.orchestration.pipeline import stages_for
    from vitq.orchestration.runner import run_stage

    paths = ArtifactPaths.for_recipe(root, recipe.name)
    for stage in stages_for(recipe):
        if stages is None or stage.name in stages:
            summary, _, _ = run_stage(stage.name, recipe, paths)
            assert isinstance(summary, str) and summary
    return paths
