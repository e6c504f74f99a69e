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
from vitq.samples import source_files


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


def _weights_inputs(recipe: Recipe) -> list[Path]:
    return [Path(recipe.weights.file)] if recipe.weights.file else []


def _mobile_input(recipe: Recipe, paths: ArtifactPaths) -> Path:
    return paths.optimized if recipe.mobile.optimize else paths.int8


def _held_out_config(recipe: Recipe) -> dict[str, Any]:
    spec = recipe.weights.train
    if recipe.samples.builtin != "held_out" or spec is None:
        return {}
    return {"dataset": spec.dataset, "holdout": spec.holdout, "seed": spec.seed}


STAGES: tuple[Stage, ...] = (
    Stage(
        "fp32",
        "float model with the recipe's weights (hub, file, train or random) -> fp32.safetensors",
        config=lambda r: r.section("model", "weights", "preprocess", "threads"),
        inputs=lambda r, p: _weights_inputs(r),
        outputs=lambda r, p: [p.fp32],
    ),
    Stage(
        "samples",
        "sample images + labels.csv under the artifact folder (held-out split, or a copy of yours)",
        config=lambda r: {"held_out": _held_out_config(r), "samples": r.section("samples")},
        inputs=lambda r, p: source_files(r),
        outputs=lambda r, p: [p.samples_labels],
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
        "lite-interpreter file for PyTorch Mobile, reloaded and run on a sample image vs its source -> int8.ptl",
        config=lambda r: r.section("mobile", "quantize", "preprocess"),
        inputs=lambda r, p: [_mobile_input(r, p), p.samples_labels],
        outputs=lambda r, p: [p.lite],
    ),
    Stage(
        "onnx_fp32",
        "ONNX export of the float model (dynamo exporter), onnx.checker, onnxruntime smoke run -> fp32.onnx",
        config=lambda r: r.section("model", "preprocess", "export", "threads"),
        inputs=lambda r, p: [p.fp32],
        outputs=lambda r, p: [p.onnx_fp32],
    ),
    Stage(
        "onnx_int8",
        "onnxruntime dynamic int8 quantization of fp32.onnx -> int8.onnx",
        config=lambda r: {},
        inputs=lambda r, p: [p.onnx_fp32],
        outputs=lambda r, p: [p.onnx_int8],
    ),
    Stage(
        "eval",
        "every variant on the sample images: top-1/top-5, agreement and logit error vs fp32 -> eval.json",
        config=lambda r: r.section("model", "preprocess", "quantize", "threads"),
        inputs=lambda r, p: [*_model_files(r, p), p.samples_labels],
        outputs=lambda r, p: [p.eval],
    ),
    Stage(
        "manifest",
        "gates, checksums, sizes, versions -> manifest.json + report.md (fails the build on a failed gate)",
        config=lambda r: r.resolved(),
        inputs=lambda r, p: [*_model_files(r, p), p.samples_labels, p.eval],
        outputs=lambda r, p: [p.manifest, p.report],
    ),
)


def _model_files(recipe: Recipe, paths: ArtifactPaths) -> list[Path]:
    files = [paths.fp32, paths.int8, paths.lite, paths.onnx_fp32, paths.onnx_int8]
    return files + ([paths.optimized] if recipe.mobile.optimize else [])


def stages_for(recipe: Recipe) -> list[Stage]:
    return [s for s in STAGES if s.applies(recipe)]


def stage_named(name: str) -> Stage:
    for stage in STAGES:
        if stage.name == name:
            return stage
    raise KeyError(name)
