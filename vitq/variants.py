"""THE table of model variants: every other module (pipeline, evaluation, gates, manifest, report, bench,
release, verify, predict) derives what it does from these rows. Torch-free, cheap to import.

Adding a variant is one row here, the stage that writes its file (a module ``<id>.py`` in the stages package
plus its entry in ``vitq.orchestration.pipeline``), and, for a new kind of file, a loader in ``vitq.model.runtimes``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from vitq.recipe import Recipe

REFERENCE = "fp32"  # what every other variant is compared with
MOBILE = "lite"  # the file an app ships (the .pte where the .ptl chain is off)
PTL = "mobile.enabled"  # the switch of the TorchScript chain
CROSS_CHECK = "onnx_int8"  # the second yardstick: onnxruntime int8, the fast int8 runtime on x86 servers

PTE_IDS = {"dynamic_int8": "pte", "8da4w": "pte_8da4w", "static_int8": "pte_static_int8", "none": "pte_none"}

Runtime = Literal["torch_eager", "torch_eager_int8", "torchscript_memory", "torchscript", "lite", "onnxruntime",
                  "executorch"]


@dataclass(frozen=True, kw_only=True)
class Variant:
    id: str  # one name everywhere: stage, manifest, eval.json, bench.json, report
    file: str | None  # artifact file name in the build folder; None: built in memory from fp32 at run time
    format: str  # manifest format of the file
    parents: tuple[str, ...]  # made from the first of these the recipe builds
    runtime: Runtime  # which loader in vitq.model.runtimes runs it
    engine: Literal["recipe"] | None  # "recipe": run with the recipe's quantize.engine (a torch quantized model)
    quantized: bool  # int8 (or float16) weights: judged by the accuracy gates
    shipped: bool  # listed in the manifest and packed into a release
    label: str  # how bench and reports name it
    requires: tuple[str, ...] = ()  # boolean recipe fields that all switch the variant on
    strategy: str | None = None  # an ExecuTorch candidate: built when the recipe lists this quantization strategy

    def applies(self, recipe: Recipe) -> bool:
        return (all(_field(recipe, field) for field in self.requires)
                and (self.strategy is None or self.strategy in recipe.pte_candidates))

    def is_quantized(self, recipe: Recipe) -> bool:
        return self.quantized

    def engine_for(self, recipe: Recipe) -> str | None:
        return recipe.quantize.engine if self.engine == "recipe" else None


VARIANTS: tuple[Variant, ...] = (
    Variant(id="fp32", file="fp32.safetensors", format="safetensors", parents=(), runtime="torch_eager", engine=None,
            quantized=False, shipped=True, label="fp32 eager"),
    Variant(id="fp32_script", file=None, format="torchscript", parents=("fp32",), runtime="torchscript_memory",
            engine=None, quantized=False, shipped=False, label="fp32 TorchScript", requires=(PTL,)),
    Variant(id="int8_eager", file=None, format="torch-eager", parents=("fp32",), runtime="torch_eager_int8",
            engine="recipe", quantized=True, shipped=False, label="int8 eager"),
    Variant(id="int8", file="int8.pt", format="torchscript", parents=("fp32",), runtime="torchscript", engine="recipe",
            quantized=True, shipped=True, label="int8 TorchScript", requires=(PTL,)),
    Variant(id="optimized", file="int8.optimized.pt", format="torchscript-mobile", parents=("int8",),
            runtime="torchscript", engine="recipe", quantized=True, shipped=True, label="int8 optimized",
            requires=(PTL, "mobile.optimize")),
    Variant(id="lite", file="int8.ptl", format="pytorch-lite", parents=("optimized", "int8"), runtime="lite",
            engine="recipe", quantized=True, shipped=True, label="int8 .ptl lite", requires=(PTL,)),
    Variant(id="onnx_fp32", file="fp32.onnx", format="onnx", parents=("fp32",), runtime="onnxruntime", engine=None,
            quantized=False, shipped=True, label="onnxruntime fp32"),
    Variant(id="onnx_int8", file="int8.onnx", format="onnx", parents=("onnx_fp32",), runtime="onnxruntime",
            engine=None, quantized=True, shipped=True, label="onnxruntime int8"),
    # The ExecuTorch candidates, one per quantization strategy (executorch.quantize lists those to build); the first
    # that passes the gates ships. dynamic_int8 keeps the id and file name the .pte has always had.
    *(Variant(id=PTE_IDS[strategy], file=file, format="executorch", parents=("fp32",), runtime="executorch",
              engine=None, quantized=strategy != "none", shipped=True, label=f"{strategy} .pte (XNNPACK)",
              requires=("executorch.enabled",), strategy=strategy)
      for strategy, file in (("dynamic_int8", "int8.pte"), ("8da4w", "8da4w.pte"), ("static_int8", "static_int8.pte"),
                             ("none", "fp32.pte"))),
)
BY_ID = {v.id: v for v in VARIANTS}


def _field(recipe: Recipe, dotted: str) -> Any:
    section, key = dotted.split(".")
    return getattr(getattr(recipe, section), key)


def variant(variant_id: str) -> Variant:
    return BY_ID[variant_id]


def variants_for(recipe: Recipe) -> list[Variant]:
    """The variants a build of this recipe has, in table order."""
    return [v for v in VARIANTS if v.applies(recipe)]


def mobile_variant(built: Iterable[str]) -> str:
    """The file an app ships from a build's variants (ids): the .ptl, or the .pte where the .ptl chain is off (the
    first candidate listed: a manifest lists only the one that shipped), or the fp32 reference where neither is
    built."""
    ids = list(built)
    ptes = [i for i in ids if i in PTE_IDS.values()]
    return MOBILE if MOBILE in ids else (ptes[0] if ptes else REFERENCE)


def pte_candidates(recipe: Recipe) -> list[Variant]:
    """The recipe's ExecuTorch candidates, in its order of preference."""
    if not recipe.executorch.enabled:
        return []
    return [BY_ID[PTE_IDS[strategy]] for strategy in recipe.pte_candidates]


def shipped(recipe: Recipe) -> list[Variant]:
    """The variants whose files are build artifacts (manifest, release)."""
    return [v for v in variants_for(recipe) if v.shipped]


def parent_of(variant_id: str, recipe: Recipe) -> str | None:
    """The variant this one is made from, for this recipe (lite comes from optimized only when it is built)."""
    built = {v.id for v in variants_for(recipe)}
    return next((p for p in BY_ID[variant_id].parents if p in built), None)


def loaded_from(variant_id: str) -> str:
    """The variant whose file this one is loaded from: its own, or for in-memory variants the fp32 weights."""
    return variant_id if BY_ID[variant_id].file else REFERENCE


def for_file(name: str) -> Variant | None:
    """The variant an artifact file name belongs to (``vitq predict int8.ptl``)."""
    return next((v for v in VARIANTS if v.file == name), None)
