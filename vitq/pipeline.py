"""The build as data: which stages a recipe has, what each reads and writes.

``vitq.tasks`` turns this into doit tasks, ``vitq.runner`` executes one stage. Cheap to import:
stage modules (which import torch) are named here, not imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from vitq.layout import ArtifactPaths
from vitq.recipe import Recipe
from vitq.samples import sample_files


@dataclass(frozen=True)
class Stage:
    name: str
    doc: str
    config: Callable[[Recipe], dict[str, Any]]  # the recipe fields this stage reads
    inputs: Callable[[Recipe, ArtifactPaths], list[Path]]
    outputs: Callable[[Recipe, ArtifactPaths], list[Path]]
    applies: Callable[[Recipe], bool] = lambda recipe: True

    @property
    def module(self) -> str:
        return f"vitq.stages.{self.name}"


def _sample_inputs(recipe: Recipe, paths: ArtifactPaths) -> list[Path]:
    images_dir, labels = sample_files(recipe, paths)
    if recipe.samples.builtin == "held_out":
        return [labels]
    images = sorted(p for p in images_dir.glob("*") if p.is_file() and not p.name.startswith("."))
    return [labels, *[p for p in images if p != labels]]


def _weights_inputs(recipe: Recipe) -> list[Path]:
    return [Path(recipe.weights.file)] if recipe.weights.file else []


def _mobile_input(recipe: Recipe, paths: ArtifactPaths) -> Path:
    return paths.optimized if recipe.mobile.optimize else paths.int8


def _held_out_config(recipe: Recipe) -> dict[str, Any]:
    spec = recipe.weights.train
    return {"dataset": spec.dataset, "holdout": spec.holdout, "seed": spec.seed} if spec else {}


STAGES: tuple[Stage, ...] = (
    Stage(
        "samples",
        "write the held-out split of the training data as PNG sample images + labels.csv",
        config=_held_out_config,
        inputs=lambda r, p: [],
        outputs=lambda r, p: [p.samples_labels],
        applies=lambda r: r.samples.builtin == "held_out",
    ),
    Stage(
        "fp32",
        "float model with the recipe's weights (hub, file, train or random) -> fp32.safetensors",
        config=lambda r: r.section("model", "weights", "preprocess", "threads"),
        inputs=lambda r, p: _weights_inputs(r),
        outputs=lambda r, p: [p.fp32],
    ),
    Stage(
        "int8",
        "dynamic int8 quantization of nn.Linear, then TorchScript (script or trace) -> int8.pt",
        config=lambda r: r.section("model", "preprocess", "quantize", "export"),
        inputs=lambda r, p: [p.fp32],
        outputs=lambda r, p: [p.int8],
    ),
    Stage(
        "optimized",
        "torch.utils.mobile_optimizer.optimize_for_mobile -> int8.optimized.pt",
        config=lambda r: r.section("mobile", "quantize"),
        inputs=lambda r, p: [p.int8],
        outputs=lambda r, p: [p.optimized],
        applies=lambda r: r.mobile.optimize,
    ),
    Stage(
        "lite",
        "lite-interpreter file for PyTorch Mobile, reloaded and checked against its source -> int8.ptl",
        config=lambda r: r.section("mobile", "quantize", "preprocess"),
        inputs=lambda r, p: [_mobile_input(r, p)],
        outputs=lambda r, p: [p.lite],
    ),
)


def stages_for(recipe: Recipe) -> list[Stage]:
    return [s for s in STAGES if s.applies(recipe)]


def stage_named(name: str) -> Stage:
    for stage in STAGES:
        if stage.name == name:
            return stage
    raise KeyError(name)
