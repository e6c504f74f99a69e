"""The build as data: which stages a recipe has, the files each reads and writes, the recipe fields and
tools that shape its output.

``vitq.orchestration.tasks`` turns this into doit tasks, ``vitq.orchestration.runner`` runs one stage with exactly the ``inputs`` and
``outputs`` mappings given here, so what doit tracks is what the stage touches. Stages that write a model
file take their input from the variant table (``vitq.variants``): a variant is made from its parent.
Cheap to import: stage modules (which import torch) are named here, not imported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vitq.check.versions import RECORDED_TOOLS
from vitq.layout import CALIBRATION, SAMPLES, TORCHSCRIPT_RECORD, ArtifactPaths
from vitq.model.samples import calibration_files, source_files
from vitq.recipe import Recipe
from vitq.variants import BY_ID, VARIANTS, parent_of, variants_for

Files = dict[str, Path]

# Distributions whose versions shape a stage's bytes (recorded in fingerprints and the manifest).
MODEL_CODE = ("torch", "timm", "transformers", "safetensors")
IMAGES = ("pillow", "torchvision", "numpy")
# The recipe fields that switch variants on (which ones a build has, so what evaluation loads): the ExecuTorch
# candidates are the strategies executorch.quantize lists (static_int8 in auto only with calibration).
VARIANT_SWITCHES = (*dict.fromkeys(field for v in VARIANTS for field in v.requires), "executorch.quantize",
                    "calibration")


@dataclass(frozen=True)
class Stage:
    name: str
    doc: str
    fields: tuple[str, ...]  # dotted recipe fields the stage reads ("*": the whole resolved recipe)
    tools: tuple[str, ...]  # distributions whose versions shape its output
    inputs: Callable[[Recipe, ArtifactPaths], Files]
    outputs: Callable[[Recipe, ArtifactPaths], Files]
    applies: Callable[[Recipe], bool] = field(default=lambda recipe: True)
    pinned: bool = False  # runs under CPU-independent numerics, in an interpreter of its own (vitq.numerics)
    code: str | None = None  # the stages module that runs it, when not the one named like the stage

    @property
    def module(self) -> str:
        return f"vitq.stages.{self.code or self.name}"


def _files(paths: ArtifactPaths, ids: list[str]) -> Files:
    return {i: paths.file(i) for i in ids}


def _samples(paths: ArtifactPaths) -> Files:
    return {SAMPLES: paths.samples_labels}


def _from_parent(variant_id: str, *, samples: bool = False) -> Callable[[Recipe, ArtifactPaths], Files]:
    """A variant stage reads its parent's file (and the sample set when it checks itself on an image)."""

    def inputs(recipe: Recipe, paths: ArtifactPaths) -> Files:
        parent = parent_of(variant_id, recipe)
        return {**_files(paths, [parent] if parent else []), **(_samples(paths) if samples else {})}

    return inputs


def variant_stage(variant_id: str, doc: str, fields: tuple[str, ...], tools: tuple[str, ...], samples: bool = False,
                  extra_outputs: Callable[[ArtifactPaths], Files] | None = None,
                  extra_inputs: Callable[[Recipe, ArtifactPaths], Files] | None = None, code: str | None = None) -> Stage:
    """The stage that writes a variant's file from its parent's (see the variant table); ``samples``: it also
    checks itself on a sample image; ``extra_outputs``: records it writes beside the file; ``extra_inputs``: other
    files it reads; ``code``: the stages module, when several variants share one."""
    parent = _from_parent(variant_id, samples=samples)

    def inputs(recipe: Recipe, paths: ArtifactPaths) -> Files:
        return {**parent(recipe, paths), **(extra_inputs(recipe, paths) if extra_inputs else {})}

    def outputs(recipe: Recipe, paths: ArtifactPaths) -> Files:
        return {**_files(paths, [variant_id]), **(extra_outputs(paths) if extra_outputs else {})}

    return Stage(variant_id, doc, fields, tools, inputs=inputs, outputs=outputs, applies=BY_ID[variant_id].applies,
                 code=code)


def _calibration(recipe: Recipe, paths: ArtifactPaths) -> Files:
    """The calibration images' listing, for the ExecuTorch candidates (static ranges, mixed precision)."""
    return {CALIBRATION: paths.calibration_list} if recipe.calibration is not None else {}


def pte_stage(variant_id: str) -> Stage:
    """One ExecuTorch candidate (vitq.stages.pte): its program and its delegation record."""
    strategy = BY_ID[variant_id].strategy
    return variant_stage(
        variant_id,
        f"ExecuTorch program, {strategy}: torch.export, XNNPACK, lowered; run in ExecuTorch on a sample image",
        fields=("model", "preprocess", "executorch", "calibration", "checks.min_agreement", "weights.random"),
        tools=(*MODEL_CODE, *IMAGES, "executorch", "torchao"),
        samples=True,
        extra_outputs=lambda paths: {f"delegation:{variant_id}": paths.delegation_of(variant_id)},
        extra_inputs=_calibration,
        code="pte",
    )


def _weights_file(recipe: Recipe, paths: ArtifactPaths) -> Files:
    return {"weights": Path(recipe.weights.file)} if recipe.weights.file else {}


def _sample_sources(recipe: Recipe, paths: ArtifactPaths) -> Files:
    return source_files(recipe)


def _calibration_sources(recipe: Recipe) -> Files:
    return calibration_files(recipe)


def model_files(recipe: Recipe, paths: ArtifactPaths) -> Files:
    """Every variant's file of this recipe's build (in-memory variants are made from fp32's): what evaluation
    and bench load."""
    return _files(paths, [v.id for v in variants_for(recipe) if v.file])


def _every_model_file(recipe: Recipe, paths: ArtifactPaths) -> Files:
    return {**model_files(recipe, paths), **_samples(paths)}


def _shipped_files(recipe: Recipe, paths: ArtifactPaths) -> Files:
    """What the stages of shipped variants wrote (their files and records such as the .pte's delegation), and
    the user's weights file (its sha256 is recorded)."""
    written: Files = {}
    for stage in stages_for(recipe):
        if stage.name in BY_ID and BY_ID[stage.name].shipped:
            written.update(stage.outputs(recipe, paths))
    return {**written, **_samples(paths), **_calibration(recipe, paths), "eval": paths.eval,
            **_weights_file(recipe, paths)}


STAGES: tuple[Stage, ...] = (
    Stage(
        "fp32",
        "float model with the recipe's weights (hub, file, train or random)",
        fields=("name", "model", "weights", "preprocess", "threads"),
        tools=(*MODEL_CODE, *IMAGES, "scikit-learn"),
        inputs=_weights_file,
        outputs=lambda recipe, paths: _files(paths, ["fp32"]),
        pinned=True,  # training: the weights must not depend on the CPU
    ),
    Stage(
        "samples",
        "sample images under the artifact folder (held-out split, photos, or a copy of yours)",
        fields=("samples", "weights.train.dataset", "weights.train.holdout", "weights.train.seed"),
        tools=("scikit-learn", "scikit-image", "pillow", "numpy"),
        inputs=_sample_sources,
        outputs=lambda recipe, paths: _samples(paths),
    ),
    Stage(
        "calibration",
        "calibration images under the artifact folder (training split, or your folder), never the samples",
        fields=("calibration", "weights.train.dataset", "weights.train.holdout", "weights.train.seed"),
        tools=("scikit-learn", "pillow", "numpy"),
        inputs=lambda recipe, paths: {**_calibration_sources(recipe), **_samples(paths)},
        outputs=_calibration,
        applies=lambda recipe: recipe.calibration is not None,
    ),
    variant_stage(
        "int8",
        "dynamic int8 quantization of nn.Linear (those whose weight the model reads stay float), then TorchScript "
        "(auto: script, else trace checked against eager)",
        fields=("model", "preprocess.crop", "quantize", "export.method"),
        tools=MODEL_CODE,
        extra_outputs=lambda paths: {TORCHSCRIPT_RECORD: paths.torchscript_record},
    ),
    variant_stage(
        "optimized",
        "torch.utils.mobile_optimizer.optimize_for_mobile",
        fields=("mobile.blocklist", "quantize.engine"),
        tools=("torch",),
    ),
    variant_stage(
        "lite",
        "lite-interpreter file for PyTorch Mobile, reloaded and run on a sample image vs its source",
        fields=("quantize.engine", "preprocess"),
        tools=("torch", *IMAGES),
        samples=True,
    ),
    variant_stage(
        "onnx_fp32",
        "ONNX export of the float model (dynamo exporter), onnx.checker, onnxruntime smoke run",
        fields=("model", "preprocess.crop", "export.opset"),
        tools=(*MODEL_CODE, "onnx", "onnxscript", "onnxruntime"),
    ),
    variant_stage(
        "onnx_int8",
        "onnxruntime dynamic int8 quantization of the ONNX export",
        fields=(),
        tools=("onnx", "onnxruntime"),
    ),
    *(pte_stage(v.id) for v in VARIANTS if v.strategy),
    Stage(
        "eval",
        "every variant on the sample images: top-1/top-5, agreement and logit error vs fp32",
        fields=("model", "preprocess", "quantize", "export.method", "samples", *VARIANT_SWITCHES),
        tools=(*MODEL_CODE, *IMAGES, "onnxruntime"),
        inputs=_every_model_file,
        outputs=lambda recipe, paths: {"eval": paths.eval},
        pinned=True,  # torch's figures exact on any AVX2 CPU; the others recorded as bounds (vitq.numerics)
    ),
    Stage(
        "manifest",
        "gates, checksums, sizes, versions (fails the build on a failed gate)",
        fields=("*",),
        tools=RECORDED_TOOLS,  # it records them all
        inputs=_shipped_files,
        outputs=lambda recipe, paths: {"manifest": paths.manifest, "report": paths.report},
    ),
)


def stages_for(recipe: Recipe) -> list[Stage]:
    return [s for s in STAGES if s.applies(recipe)]


def stage_named(name: str) -> Stage:
    for stage in STAGES:
        if stage.name == name:
            return stage
    raise KeyError(name)
