"""Recipe YAML -> frozen, validated ``Recipe``.

The only module that knows YAML and the recipe schema. It must stay cheap to import (dodo.py loads
it on every ``doit`` call), so no torch, timm or transformers here: checks that need those libraries
(is this a real timm model?) happen in the stages and raise the same ``RecipeError``.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from vitq.errors import RecipeError

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
# Names of torch.utils.mobile_optimizer.MobileOptimizerType members (kept here to avoid a torch import).
MOBILE_PASSES = (
    "CONV_BN_FUSION",
    "INSERT_FOLD_PREPACK_OPS",
    "REMOVE_DROPOUT",
    "FUSE_ADD_RELU",
    "HOIST_CONV_PACKED_PARAMS",
    "VULKAN_AUTOMATIC_GPU_TRANSFER",
)
MobilePass = Literal[MOBILE_PASSES]  # type: ignore[valid-type]
# The quantization choices, named as torch names them (torch.qint8, torch.nn.Linear, torch.backends.quantized.engine):
# the one list of allowed values that convert and bench map to torch objects.
DTYPES = ("qint8", "float16")
QUANTIZED_MODULES = ("Linear",)
ENGINES = ("qnnpack", "x86", "fbgemm")
# Sections that hold one of several alternatives: a child recipe naming another alternative replaces
# the parent's section instead of merging into it (weights: {file: x} over weights: {train: ...}).
ALTERNATIVE_SECTIONS = ("weights", "samples", "calibration")
# Fields holding paths, resolved against the directory of the recipe file that sets them.
PATH_FIELDS = (("weights", "file"), ("samples", "dir"), ("samples", "labels"), ("calibration", "dir"))
# How the ExecuTorch program may be quantized (vitq.model.pte_quantization does each), and the order ``auto`` tries
# them in: smallest program first (4-bit weights, then int8 weights computed at run time, then calibrated int8
# activations, which is only tried when the recipe declares calibration images, then float).
STRATEGIES = ("none", "dynamic_int8", "8da4w", "static_int8")
AUTO = ("8da4w", "dynamic_int8", "static_int8", "none")
Strategy = Literal[STRATEGIES]  # type: ignore[valid-type]

PositiveInt = Annotated[int, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, use_attribute_docstrings=True)

    @model_validator(mode="before")
    @classmethod
    def _null_means_default(cls, value: Any) -> Any:
        """``field: null`` for a field with a default is that default: how a child recipe drops what its parent set
        (``executorch: null``, ``mobile: {blocklist: null}``; ``calibration: null`` is no calibration)."""
        if not isinstance(value, dict):
            return value
        fields = cls.model_fields
        return {k: v for k, v in value.items()
                if not (v is None and k in fields and not fields[k].is_required() and fields[k].default is not None)}


def _drop_hint(info: ValidationInfo, section: str, key: str | None = None) -> str:
    """What a child recipe writes to drop a section (or key) it inherited and that the refusal is about."""
    dotted = f"{section}.{key}" if key else section
    if dotted not in ((info.context or {}).get("inherited") or ()):
        return ""
    return f"; drop the parent's with `{section}: {{{key}: null}}`" if key else f"; drop the parent's with `{section}: null`"


class ModelSpec(_Section):
    """Which network: a timm name plus create_model kwargs, or a transformers id plus config overrides."""

    source: Literal["timm", "transformers"]
    """Which library builds the network: timm's create_model or transformers' AutoModelForImageClassification."""
    name: Annotated[str, Field(min_length=1)]
    """A timm model name; for transformers a hub id, a local folder, or a model class such as ViTForImageClassification (built from its default config plus kwargs)."""
    kwargs: dict[str, Any] = {}
    """timm create_model keyword arguments, or transformers config overrides (e.g. num_classes, img_size)."""


class TrainSpec(_Section):
    """Train the model inside the build on a data set a package ships (deterministic, CPU)."""

    dataset: Literal["digits"]
    """The data set to train on: scikit-learn's bundled 8x8 digits, upscaled to the model's input."""
    holdout: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.2
    """The share of images never trained on; they become the sample set (samples: held_out)."""
    seed: int = 0
    """Seed of the held-out split, the batch order and the shifts."""
    epochs: PositiveInt = 30
    """Passes over the training split."""
    batch_size: PositiveInt = 64
    """Images per optimizer step."""
    lr: Annotated[float, Field(gt=0.0)] = 2e-3
    """AdamW learning rate."""
    weight_decay: Annotated[float, Field(ge=0.0)] = 0.05
    """AdamW weight decay."""
    label_smoothing: Fraction = 0.1
    """Cross-entropy label smoothing."""
    shift: Annotated[int, Field(ge=0)] = 2
    """Random shift augmentation, in pixels."""


class RandomSpec(_Section):
    seed: int = 0
    """Seed of the random initialization."""


class Weights(_Section):
    """Exactly one source: ``hub``, ``{file: path}``, ``{train: {...}}`` or ``{random: {seed: N}}``."""

    hub: Literal[True] | None = None
    """The pretrained weights from the Hugging Face hub (or HF_HOME's cache); written `weights: hub`."""
    file: str | None = None
    """Your weights: a .safetensors or .pth file, relative to the recipe that sets it."""
    train: TrainSpec | None = None
    """Train the model inside the build (see weights.train)."""
    random: RandomSpec | None = None
    """Random weights with a seed: builds every format offline; accuracy gates are then not applicable."""

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if value == "hub":
            return {"hub": True}
        if isinstance(value, str):
            raise ValueError(f"expected hub, {{file: path}}, {{train: ...}} or {{random: {{seed: N}}}}, got {value!r}")
        if value == {"random": None}:  # `weights: {random: }` means the default seed
            return {"random": {}}
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> Weights:
        chosen = [k for k in ("hub", "file", "train", "random") if getattr(self, k) is not None]
        if len(chosen) != 1:
            raise ValueError(f"expected exactly one of hub, file, train, random; got {chosen or 'none'}")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("hub", "file", "train", "random") if getattr(self, k) is not None)


class Preprocess(_Section):
    """Resize (shorter side, or both sides when ``resize_mode: exact``), center-crop, scale, normalize.

    Images are converted to RGB first. ``exact`` is what transformers' ViTImageProcessor does.
    """

    resize: PositiveInt
    """Resize target in pixels: the shorter side, or both sides with resize_mode: exact."""
    resize_mode: Literal["shorter", "exact"] = "shorter"
    """shorter: keep the aspect ratio; exact: resize both sides (what transformers' ViTImageProcessor does)."""
    crop: PositiveInt
    """Center crop in pixels: the model's input size; at most resize."""
    interpolation: Literal["nearest", "bilinear", "bicubic", "lanczos", "box", "hamming"] = "bicubic"
    """Pillow's resampling filter for the resize."""
    mean: Annotated[list[float], Field(min_length=3, max_length=3)]
    """Per-channel mean subtracted after scaling pixels to [0, 1] (RGB)."""
    std: Annotated[list[Annotated[float, Field(gt=0.0)]], Field(min_length=3, max_length=3)]
    """Per-channel standard deviation divided by (RGB)."""

    @model_validator(mode="after")
    def _crop_fits(self) -> Preprocess:
        if self.crop > self.resize:
            raise ValueError(f"crop ({self.crop}) is larger than resize ({self.resize})")
        return self


class Quantize(_Section):
    dtype: Literal[DTYPES] = "qint8"  # type: ignore[valid-type]
    """Weight type of the dynamic quantization of the TorchScript chain; float16 needs engine x86 or fbgemm."""
    modules: Annotated[list[Literal[QUANTIZED_MODULES]], Field(min_length=1)] = ["Linear"]  # type: ignore[valid-type]
    """Module types quantize_dynamic replaces."""
    engine: Literal[ENGINES] = "qnnpack"  # type: ignore[valid-type]
    """torch's quantized engine: qnnpack for ARM phones, x86 or fbgemm for servers."""

    @model_validator(mode="after")
    def _engine_supports_dtype(self) -> Quantize:
        if self.dtype == "float16" and self.engine == "qnnpack":
            raise ValueError("float16 needs engine x86 or fbgemm (qnnpack has no float16 linear)")
        return self


class Export(_Section):
    method: Literal["auto", "script", "trace"] = "auto"
    """How the TorchScript chain captures the model: torch.jit.script; torch.jit.trace on a sample input; or auto,
    script and where scripting (or saving the scripted module) fails, trace checked against eager (the manifest
    records which was used)."""
    opset: Annotated[int, Field(ge=17, le=23)] = 18
    """ONNX opset of the ONNX export."""


class Mobile(_Section):
    """The PyTorch Mobile chain (int8.pt -> int8.optimized.pt -> int8.ptl): on or off, ``optimize_for_mobile`` and
    the passes it should skip; without optimize the lite file is only frozen."""

    enabled: bool = True
    """The TorchScript chain (int8.pt, int8.optimized.pt, int8.ptl); false for a model TorchScript cannot take (the .pte is then the mobile file)."""
    optimize: bool = True
    """Run optimize_for_mobile (int8.optimized.pt); false: the .ptl is made from int8.pt after torch.jit.freeze only."""
    blocklist: list[MobilePass] = []
    """MobileOptimizerType passes optimize_for_mobile skips (only with optimize: true)."""

    @field_validator("blocklist")
    @classmethod
    def _needs_optimize(cls, blocklist: list[str], info: ValidationInfo) -> list[str]:
        if blocklist and info.data.get("optimize") is False:
            raise ValueError("names optimize_for_mobile passes to skip, but optimize is false; remove it or set "
                             f"optimize: true{_drop_hint(info, 'mobile', 'blocklist')}")
        return blocklist


class ExecuTorch(_Section):
    """The ExecuTorch program (.pte, XNNPACK backend), the successor of the PyTorch Mobile .ptl.

    ``quantize`` is one strategy or a list of candidates in order of preference (``auto``: 8da4w, dynamic_int8, static_int8 where calibration is
    declared, none): each candidate is
    built and evaluated, and the first that passes the gates ships."""

    enabled: bool = True
    """Build the ExecuTorch program (.pte, XNNPACK backend)."""
    quantize: str | list[str] = Field("dynamic_int8", json_schema_extra={"values": [*STRATEGIES, "auto"]})
    """A strategy, a list of candidates in order of preference (the first that passes the gates ships), or auto. dynamic_int8: int8 weights per channel, activations per token at run time; 8da4w: 4-bit weights in groups of group_size input channels, 8-bit dynamic activations; static_int8: int8 activations with ranges calibrated on the calibration images; none: a float program."""
    group_size: Annotated[int, Field(ge=32, multiple_of=32)] = 32
    """Input channels per group of 8da4w's 4-bit weights: a multiple of 32, as XNNPACK requires."""
    max_float_layers: Annotated[int, Field(ge=0)] = 4
    """Mixed precision: a candidate that disagrees with fp32 on the calibration images is rebuilt with its most sensitive layers in float, up to this many (needs calibration; 0: never)."""

    @field_validator("quantize")
    @classmethod
    def _known_candidates(cls, value: str | list[str]) -> str | list[str]:
        known = f"expected one of {', '.join(STRATEGIES)} or auto, or a list of them"
        given = [value] if isinstance(value, str) else value
        if not given:
            raise ValueError(f"an empty list of candidates; {known}")
        unknown = [v for v in given if v not in STRATEGIES and not (v == "auto" and isinstance(value, str))]
        if unknown:
            raise ValueError(f"unknown strategy {unknown[0]!r}; {known}")
        repeated = sorted({v for v in given if given.count(v) > 1})
        if repeated:
            raise ValueError(f"{repeated[0]} is listed twice; {known}")
        return value

    def candidates(self, calibrated: bool) -> tuple[str, ...]:
        """The strategies to build, in order of preference (``calibrated``: the recipe declares calibration)."""
        if self.quantize == "auto":
            return tuple(s for s in AUTO if calibrated or s != "static_int8")
        return (self.quantize,) if isinstance(self.quantize, str) else tuple(self.quantize)


class Calibration(_Section):
    """Images the static int8 program measures its activation ranges on (and mixed precision ranks layers on):
    ``{split: train, count: N}``, the training split of ``weights.train`` (never the held-out samples), or
    ``{dir: folder, count: N}``, the first N images of a folder by name. Never the evaluation samples."""

    split: Literal["train"] | None = None
    """train: the first count images of weights.train's training split (never the held-out samples)."""
    dir: str | None = None
    """A folder: its first count images by name, relative to the recipe; refused when one is a sample image."""
    count: PositiveInt = 32
    """How many calibration images."""

    @model_validator(mode="after")
    def _one_source(self) -> Calibration:
        if (self.split is None) == (self.dir is None):
            raise ValueError("expected exactly one of {split: train} or {dir: folder}")
        return self


class Samples(_Section):
    """Sample images with labels: the training set's held-out split, scikit-image's photos, or your folder."""

    builtin: Literal["held_out", "photos"] | None = None
    """held_out: the training set's held-out split; photos: scikit-image's bundled photographs (ImageNet-1k labels). Written `samples: held_out`."""
    dir: str | None = None
    """A folder of your images, relative to the recipe (with labels)."""
    labels: str | None = None
    """Their labels: CSV with a header file,label (indices separated by spaces when several are right) or YAML {file: index or [indices]}."""

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"builtin": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_kind(self) -> Samples:
        if self.builtin is None and (self.dir is None or self.labels is None):
            raise ValueError("expected held_out, photos or {dir: folder, labels: file}")
        if self.builtin is not None and (self.dir is not None or self.labels is not None):
            raise ValueError("give either builtin or dir + labels, not both")
        return self


class Checks(_Section):
    """Gates a build must pass. Accuracy figures are fractions (0.01 = one point)."""

    onnx_atol: Annotated[float, Field(gt=0.0)] = 1e-4
    """Largest |logit difference| allowed between the fp32 ONNX file and torch fp32 (same top-1 too), or onnx_rtol of the largest fp32 |logit| where that is more."""
    onnx_rtol: Annotated[float, Field(ge=0.0)] = 1e-5
    """The ONNX fp32 tolerance relative to the largest fp32 |logit| on the samples: float32 rounding grows with the values (untrained MobileOne's logits reach 2e7, where ONNX Runtime and torch differ by 10)."""
    min_agreement: Fraction = 0.98
    """Share of samples on which every quantized variant's top-1 must equal fp32's."""
    max_accuracy_drop: Fraction = 0.01
    """Top-1 accuracy a quantized variant may lose against fp32 (0.01: one point)."""
    max_portable_nodes: Annotated[int, Field(ge=0)] = 5
    """Graph nodes of the .pte allowed on ExecuTorch's portable kernels, outside XNNPACK (each is a slow island)."""


class Recipe(_Section):
    name: str
    """The recipe file's name; set by the loader."""
    source: str
    """The recipe file, absolute; set by the loader."""
    version: Annotated[str, Field(min_length=1)] = "0.0.0"
    """Release version: the tarball is <recipe>-<version>.tar.gz."""
    description: str = ""
    """One line for people; kept in the manifest with the resolved recipe."""
    threads: PositiveInt = 2
    """torch threads in every stage, fixed whatever doit's -n, so the bytes never depend on it."""
    model: ModelSpec
    """Which network."""
    weights: Weights
    """Where the weights come from: exactly one of hub, file, train, random."""
    preprocess: Preprocess
    """How an image becomes the model's input."""
    quantize: Quantize = Quantize()
    """The dynamic quantization of the TorchScript chain."""
    export: Export = Export()
    """TorchScript capture and ONNX export."""
    mobile: Mobile = Mobile()
    """The PyTorch Mobile chain (.ptl)."""
    executorch: ExecuTorch = ExecuTorch()
    """The ExecuTorch program (.pte)."""
    calibration: Calibration | None = None
    """Calibration images for static_int8 and mixed precision; optional (never the samples)."""
    samples: Samples
    """The labelled images every variant is checked on."""
    checks: Checks = Checks()
    """The gates a build must pass."""

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> Recipe:
        if self.samples.builtin == "held_out" and self.weights.train is None:
            raise ValueError("samples: 'held_out' needs weights: {train: ...}")
        if self.calibration is not None and self.calibration.split and self.weights.train is None:
            raise ValueError("calibration: {split: train} needs weights: {train: ...}; or give {dir: folder}"
                             + _drop_hint(info, "calibration"))
        if self.executorch.enabled and "static_int8" in self.pte_candidates and self.calibration is None:
            raise ValueError("executorch.quantize: static_int8 needs calibration images: add calibration: "
                             "{split: train} (a recipe that trains) or {dir: folder}"
                             + _drop_hint(info, "executorch", "quantize"))
        return self

    @property
    def pte_candidates(self) -> tuple[str, ...]:
        """The ExecuTorch programs this recipe builds: quantization strategies in order of preference."""
        return self.executorch.candidates(self.calibration is not None)

    @property
    def lone_pte_candidate(self) -> bool:
        """One strategy: its program ships or the build fails (no other candidate can take its place)."""
        return len(self.pte_candidates) == 1

    @property
    def accuracy_meaningful(self) -> bool:
        """Trained weights: top-1 and agreement mean something, so the accuracy gates can judge a program."""
        return self.weights.kind != "random"

    @property
    def path(self) -> Path:
        return Path(self.source)

    def section(self, *names: str) -> dict[str, Any]:
        """The named top-level fields as plain JSON-able data: what a stage reads, for config_changed."""
        return {n: _plain(getattr(self, n)) for n in names}

    def resolved(self) -> dict[str, Any]:
        """The whole recipe after extends and defaults, with paths relative to the recipe file."""
        data = self.model_dump(mode="json", exclude={"source"}, exclude_none=True)
        base = self.path.parent
        for section, key in PATH_FIELDS:
            value = (data.get(section) or {}).get(key)
            if value:
                data[section][key] = os.path.relpath(value, base)
        return data


def _plain(value: Any) -> Any:
    return value.model_dump(mode="json", exclude_none=True) if isinstance(value, BaseModel) else value


# ---------------------------------------------------------------- loading


def load_recipe(path: Path | str) -> Recipe:
    """Read, merge (extends) and validate one recipe file.

    Schema problems are reported all at once (one RecipeError, one line each), so a user fixes them in
    one pass; problems that stop reading (YAML syntax, missing file, extends) are reported alone."""
    path = Path(path).absolute()
    name = path.stem
    if not NAME_PATTERN.match(name):
        raise RecipeError(path, "name", f"recipe name {name!r} must match {NAME_PATTERN.pattern}")
    data = _load_merged(path, ())
    own = _read_yaml(path)  # what this file sets itself: the rest a parent set (refusals say how to drop it)
    inherited = _dotted(data) - _dotted(own) if "extends" in own else set()
    # name and source lead the schema, so their problems come first, as pydantic would order them.
    problems = [(key, "is set from the file name; remove it") for key in ("name", "source") if key in data]
    try:
        recipe = Recipe.model_validate({**data, "name": name, "source": str(path)}, context={"inherited": inherited})
    except ValidationError as exc:
        problems += _problems(exc)
    if problems:
        raise RecipeError.many(path, problems)
    return recipe


def _dotted(data: dict[str, Any]) -> set[str]:
    """The sections and section.key names a recipe's data sets (what a child can inherit)."""
    return set(data) | {f"{s}.{k}" for s, v in data.items() if isinstance(v, dict) for k in v}


def _load_merged(path: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    data = _read_yaml(path)
    _resolve_paths(data, path.parent)
    parent_ref = data.pop("extends", None)
    if parent_ref is None:
        return data
    if not isinstance(parent_ref, str) or not parent_ref:
        raise RecipeError(path, "extends", f"expected a path to another recipe, got {parent_ref!r}")
    parent = Path(_absolute(path.parent, parent_ref))
    here = chain + (path.resolve(),)
    if parent.resolve() in here:
        cycle = " -> ".join(p.name for p in here + (parent.resolve(),))
        raise RecipeError(path, "extends", f"cycle: {cycle}")
    if not parent.is_file():
        raise RecipeError(path, "extends", f"parent recipe not found: {parent_ref}")
    return merge(_load_merged(parent, here), data)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(path, None, "recipe file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(path, None, f"cannot read recipe: {exc.__class__.__name__}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RecipeError(path, where, f"YAML syntax error: {problem}") from None
    if data is None:
        raise RecipeError(path, None, "recipe is empty")
    if not isinstance(data, dict):
        raise RecipeError(path, None, f"expected a mapping of sections, got {type(data).__name__}")
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise RecipeError(path, str(bad[0]), "keys must be strings")
    return data


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    """Make path fields absolute against the file that sets them, so extends keeps them right."""
    weights = data.get("weights")
    if isinstance(weights, dict) and isinstance(weights.get("file"), str):
        weights["file"] = _absolute(base, weights["file"])
    for section, key in PATH_FIELDS[1:]:
        fields = data.get(section)
        if isinstance(fields, dict) and isinstance(fields.get(key), str):
            fields[key] = _absolute(base, fields[key])


def _absolute(base: Path, value: str) -> str:
    return os.path.normpath(base.absolute() / os.path.expanduser(value))


def merge(parent: dict[str, Any], child: dict[str, Any], _depth: int = 0) -> dict[str, Any]:
    """Child overrides parent; mappings merge key by key, anything else is replaced.

    A top-level alternative section (weights, samples) is replaced whole when the child
    picks another alternative, so ``weights: {random: {}}`` over ``weights: {file: x}`` means random.
    """
    out = dict(parent)
    for key, value in child.items():
        old = out.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            switched = _depth == 0 and key in ALTERNATIVE_SECTIONS and not (set(old) & set(value))
            out[key] = dict(value) if switched else merge(old, value, _depth + 1)
        else:
            out[key] = value
    return out


# ---------------------------------------------------------------- error messages


def _problems(exc: ValidationError) -> list[tuple[str | None, str]]:
    """``(field, problem)`` per field, in pydantic's (schema) order: one line per real problem, even
    where pydantic reports a value once per union member."""
    found: dict[str | None, str] = {}
    for err in exc.errors(include_url=False):
        field, problem = _problem(err)
        found.setdefault(field, problem)
    return list(found.items())


def _problem(err: Any) -> tuple[str | None, str]:
    parts = list(err["loc"])
    unknown = [parts.pop()] if err["type"] == "extra_forbidden" else []  # the user's key, whatever it is
    # Other strings the schema does not know are pydantic's tags ("function-after[...]", "int", "[key]").
    loc = [str(p) for p in parts if not isinstance(p, str) or p in _schema_keys()] + [str(k) for k in unknown]
    field = ".".join(loc) or None
    kind = err["type"]
    if kind == "extra_forbidden":
        known = _field_names(loc[:-1])
        guess = difflib.get_close_matches(loc[-1], known, n=1)
        hint = f"; did you mean '{guess[0]}'?" if guess else f"; expected one of {', '.join(known)}"
        return field, f"unknown key{hint}"
    if kind == "invalid_key" or err["loc"][-1:] == ("[key]",):
        return field, f"keys must be strings, got {_short(err['input'])}"
    if kind == "missing":
        return field, "missing required field"
    if kind == "literal_error":
        return field, f"expected one of {err['ctx']['expected']}, got {_short(err['input'])}"
    message = err["msg"].removeprefix("Value error, ")
    if kind not in ("value_error", "assertion_error") and "input" in err:
        message += f", got {_short(err['input'])}"
    return field, message


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _field_names(loc: list[str]) -> list[str]:
    model: Any = Recipe
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = _model_of(field.annotation)
    names = list(getattr(model, "model_fields", {}))
    return [n for n in names if n not in ("name", "source")]


@functools.cache
def _schema_keys() -> frozenset[str]:
    """Every key the recipe schema knows, at any depth."""
    keys: set[str] = set()
    models = [Recipe]
    while models:
        fields = models.pop().model_fields
        keys.update(fields)
        models += [m for m in map(_model_of, (f.annotation for f in fields.values())) if m is not None]
    return frozenset(keys)


def _model_of(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, Annotated) or get_origin(annotation) is not None:
        for arg in get_args(annotation):
            found = _model_of(arg)
            if found is not None:
                return found
    return None
