"""Every switch a recipe offers, walked on the tiny in-process model: each combination the schema accepts builds
every variant it enables (evaluation loads and runs each one), or is refused in one line naming the field; none
reaches a stage crash.

The values come from the schema itself (a value added to a ``Literal`` there is walked here without editing this
file). The TorchScript chain's switches are combined pairwise (allpairspy, plus any pair it left out), since a
bug there shows up as a pair (``optimize: false`` with ``method: script`` broke the lite loader while
``optimize: false`` with ``trace`` did not). Each combination is built as doit would rebuild it from the base
build: only the stages whose fields, inputs or input files changed run again.
"""

from __future__ import annotations

import functools
import itertools
import json
import shutil
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import pytest
import torch
from allpairspy import AllPairs
from pydantic import ValidationError
from safetensors.torch import load_file

from vitq.errors import RecipeError, VitqError
from vitq.layout import ArtifactPaths
from vitq.model import networks
from vitq.model.runtimes import load_pte
from vitq.orchestration.pipeline import stages_for
from vitq.orchestration.runner import run_stage
from vitq.recipe import (
    MOBILE_PASSES,
    STRATEGIES,
    ExecuTorch,
    Export,
    Mobile,
    Quantize,
    Recipe,
    Samples,
    Weights,
    load_recipe,
)
from vitq.variants import PTE_IDS

from conftest import write_recipe
from helpers_models import recording_field_reads, undeclared_reads

BLOCKED = "mobile.blocklist:"  # one on/off factor per optimize_for_mobile pass


def choices(section: type, field: str) -> list[Any]:
    """The values the schema allows for a field: its Literal's members (None left out), or both booleans."""
    annotation = section.model_fields[field].annotation
    if annotation is bool:
        return [False, True]
    if (section, field) == (ExecuTorch, "quantize"):  # one strategy, a list of candidates, or auto
        # (static_int8 needs calibration images: tests/test_candidates.py builds it)
        return [s for s in STRATEGIES if s != "static_int8"]
    members = [annotation] if get_origin(annotation) is Literal else get_args(annotation)
    return [value for member in members if get_origin(member) is Literal for value in get_args(member)]


# The switches of the int8 -> optimized -> lite chain, in the order allpairspy fills a row.
CHAIN: dict[str, list[Any]] = {
    "export.method": choices(Export, "method"),
    "quantize.dtype": choices(Quantize, "dtype"),
    "quantize.engine": choices(Quantize, "engine"),
    "mobile.optimize": choices(Mobile, "optimize"),
    **{BLOCKED + name: [False, True] for name in MOBILE_PASSES},
}


def sections(row: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A row of switch values as recipe sections."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in row.items():
        if key.startswith(BLOCKED):
            blocklist = out.setdefault("mobile", {}).setdefault("blocklist", [])
            blocklist += [key.removeprefix(BLOCKED)] if value else []
            continue
        section, field = key.split(".")
        out.setdefault(section, {})[field] = value
    return out


def accepted(row: dict[str, Any]) -> bool:
    """Whether the schema takes these sections (checked section by section: cheap, no file)."""
    models = {"export": Export, "quantize": Quantize, "mobile": Mobile, "executorch": ExecuTorch}
    try:
        for section, values in sections(row).items():
            models[section].model_validate(values)
    except ValidationError:
        return False
    return True


@functools.cache
def completable(prefix: tuple[Any, ...]) -> bool:
    """Some choice of the factors after ``prefix`` makes a row the schema accepts (allpairspy fills rows left to
    right and asks about each prefix)."""
    names = list(CHAIN)
    rest = list(CHAIN.values())[len(prefix):]
    return any(accepted(dict(zip(names, prefix + tail, strict=True))) for tail in itertools.product(*rest))


def chain_rows() -> list[dict[str, Any]]:
    """Accepted rows covering every pair of values that some accepted row can hold."""
    names = list(CHAIN)
    rows = [dict(zip(names, row, strict=True))
            for row in AllPairs(list(CHAIN.values()), filter_func=lambda row: completable(tuple(row)))]
    full = [dict(zip(names, row, strict=True)) for row in itertools.product(*CHAIN.values())]
    full = [row for row in full if accepted(row)]
    for a, b in itertools.combinations(names, 2):
        for pair in itertools.product(CHAIN[a], CHAIN[b]):
            if any((r[a], r[b]) == pair for r in rows):
                continue
            holder = next((r for r in full if (r[a], r[b]) == pair), None)
            if holder is not None:  # allpairspy's filter can drop a pair: add the first accepted row that has it
                rows.append(holder)
    return rows


CHAIN_ROWS = chain_rows()


def row_yaml(row: dict[str, Any]) -> str:
    return "".join(f"{section}: {values}\n" for section, values in sections(row).items()).replace("'", "")


# ---------------------------------------------------------------- building as doit would rebuild


@pytest.fixture(scope="module")
def base(tiny_build):
    """The tiny build every combination starts from, with its recipe."""
    recipe_file = tiny_build.root.parent.parent / "tiny.yaml"
    return load_recipe(recipe_file), tiny_build


def field_value(recipe: Recipe, dotted: str) -> Any:
    node: Any = recipe.model_dump(mode="json", exclude={"source"})
    if dotted == "*":
        return node
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def rebuild(base_recipe: Recipe, base_paths: ArtifactPaths, recipe: Recipe, folder: Path) -> list[str]:
    """Build ``recipe`` from a copy of the base build, running the stages doit would run: those whose fields
    or input set changed, new ones, and those reading a file that came out different. Evaluation (every variant
    loaded and run on the samples) and the manifest (the gates) always run. Each stage that runs reads only the
    recipe fields it declares (so a rebuild by doit is never stale). Returns the stages run."""
    root = folder / "artifacts"
    shutil.copytree(base_paths.root, root / recipe.name)
    paths = ArtifactPaths.for_recipe(root, recipe.name)
    before = {s.name: s for s in stages_for(base_recipe)}
    changed: set[Path] = set()
    ran = []
    for stage in stages_for(recipe):
        inputs = stage.inputs(recipe, paths)
        outputs = stage.outputs(recipe, paths)
        old = before.get(stage.name)
        stale = (old is None or stage.name in ("eval", "manifest")
                 or any(field_value(recipe, f) != field_value(base_recipe, f) for f in stage.fields)
                 or set(inputs) != set(old.inputs(base_recipe, paths))
                 or any(path in changed for path in inputs.values()))
        if not stale:
            continue
        previous = {path: path.read_bytes() if path.is_file() else None for path in outputs.values()}
        with recording_field_reads(recipe) as reads:
            run_stage(stage.name, recipe, paths)
        assert undeclared_reads(reads) == {}, f"{stage.name} reads fields it does not declare"
        ran.append(stage.name)
        changed |= {path for path, data in previous.items() if not path.is_file() or path.read_bytes() != data}
    return ran


def variant_recipe(base_recipe: Recipe, folder: Path, extra: str) -> Recipe:
    """The base recipe with ``extra`` on top, under the same name (so the fp32 file's metadata is the same)."""
    return load_recipe(write_recipe(folder, base_recipe.name, f"extends: {base_recipe.path}\n{extra}"))


def assert_one_line_naming(error: VitqError, recipe_file: Path, field: str) -> None:
    text = str(error)
    assert "\n" not in text and recipe_file.name in text and f": {field}: " in text, text


# ---------------------------------------------------------------- the walk


def test_every_pair_of_chain_switch_values_is_in_some_row():
    for a, b in itertools.combinations(CHAIN, 2):
        for pair in itertools.product(CHAIN[a], CHAIN[b]):
            if any(accepted(r) and (r[a], r[b]) == pair for r in
                   (dict(zip(CHAIN, row, strict=True)) for row in itertools.product(*CHAIN.values()))):
                assert any((r[a], r[b]) == pair for r in CHAIN_ROWS), (a, b, pair)
    assert all(accepted(row) for row in CHAIN_ROWS)


@pytest.mark.parametrize("row", CHAIN_ROWS, ids=lambda row: row_yaml(row).replace("\n", "; "))
def test_each_accepted_combination_of_chain_switches_builds_every_variant(base, tmp_path, row):
    base_recipe, base_paths = base
    recipe = variant_recipe(base_recipe, tmp_path, row_yaml(row))
    ran = rebuild(base_recipe, base_paths, recipe, tmp_path)
    assert "eval" in ran and "manifest" in ran  # every variant loaded and run on the samples, gates passed


EXECUTORCH = [{"executorch.enabled": enabled, "executorch.quantize": quantize}
              for enabled in choices(ExecuTorch, "enabled") for quantize in choices(ExecuTorch, "quantize")]


def executorch_row(row: dict[str, Any]) -> Any:
    """A row that lowers a program of its own (another strategy than the base build's) is heavy: make test walks
    it, make test-fast leaves it to the base build's dynamic int8 program."""
    lowers = row["executorch.enabled"] and row["executorch.quantize"] != ExecuTorch().quantize
    return pytest.param(row, marks=[pytest.mark.heavy] if lowers else [])


@pytest.mark.parametrize("row", [executorch_row(row) for row in EXECUTORCH], ids=lambda row: row_yaml(row).strip())
def test_each_executorch_setting_builds_or_leaves_the_pte_out(base, tmp_path, row):
    base_recipe, base_paths = base
    recipe = variant_recipe(base_recipe, tmp_path, row_yaml(row))
    ran = rebuild(base_recipe, base_paths, recipe, tmp_path)
    lowered = [stage for stage in ran if stage.startswith("pte")]  # the candidate's stage: pte, pte_8da4w, ...
    assert bool(lowered) == (recipe.executorch.enabled and recipe.executorch != base_recipe.executorch)
    assert "manifest" in ran
    paths = ArtifactPaths.for_recipe(tmp_path / "artifacts", recipe.name)
    if lowered:
        assert lowered == [PTE_IDS[recipe.executorch.quantize]] and paths.file(lowered[0]).is_file()
    if recipe.executorch.enabled and recipe.executorch.quantize == "none":  # float all the way: fp32's logits
        image = torch.randn(1, 3, recipe.preprocess.crop, recipe.preprocess.crop, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            want = networks.load_fp32(recipe, paths.file("fp32"))(image).numpy()
        assert abs(load_pte(paths.file("pte_none"))(image) - want).max() < 1e-4


def test_the_ptl_chain_switched_off_builds_no_torchscript_and_the_manifest_follows(base, tmp_path):
    base_recipe, base_paths = base
    recipe = variant_recipe(base_recipe, tmp_path, "mobile: {enabled: false}\n")
    ran = rebuild(base_recipe, base_paths, recipe, tmp_path)
    assert not {"int8", "optimized", "lite"} & set(ran) and "manifest" in ran
    paths = ArtifactPaths.for_recipe(tmp_path / "artifacts", recipe.name)
    manifest = json.loads(paths.manifest.read_text())
    assert {a["name"] for a in manifest["artifacts"]} == {"fp32", "onnx_fp32", "onnx_int8", "pte"}
    assert not [c for c in manifest["checks"] if c["name"].split(".")[0] in ("int8", "optimized", "lite", "fp32_script")]
    assert "Mobile artifact: `int8.pte` (ExecuTorch, XNNPACK)" in paths.report.read_text()


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_weights_from_a_file_build(base, tmp_path, suffix):
    base_recipe, base_paths = base
    weights = tmp_path / f"weights{suffix}"
    state = load_file(str(base_paths.file("fp32")))
    if suffix == ".pt":
        torch.save(state, weights)
    else:
        shutil.copy(base_paths.file("fp32"), weights)
    recipe = variant_recipe(base_recipe, tmp_path, f"weights: {{file: {weights.name}}}\n")
    ran = rebuild(base_recipe, base_paths, recipe, tmp_path)
    assert ran[0] == "fp32" and "manifest" in ran


def test_training_builds_with_held_out_samples(base, tmp_path):
    base_recipe, base_paths = base
    recipe = variant_recipe(base_recipe, tmp_path, "model: {kwargs: {num_classes: 10}}\n"
                            "weights: {train: {dataset: digits, epochs: 1, holdout: 0.02}}\nsamples: held_out\n"
                            "executorch: {enabled: false}\n")  # the .pte of trained weights is the digits e2e build's
    ran = rebuild(base_recipe, base_paths, recipe, tmp_path)
    assert {"fp32", "samples", "lite", "onnx_int8", "eval", "manifest"} <= set(ran)


REFUSED = [
    # (what the user wrote, the field the one line names, where it is caught)
    ("quantize: {dtype: float16, engine: qnnpack}\n", "quantize", "recipe"),
    ("mobile: {optimize: false, blocklist: [REMOVE_DROPOUT]}\n", "mobile.blocklist", "recipe"),
    ("weights: {train: {dataset: digits, epochs: 1}}\nsamples: held_out\n", "model.kwargs.num_classes", "fp32"),
    ("samples: photos\nexecutorch: {enabled: false}\n", "samples", "eval"),
    ("weights: hub\n", "weights", "fp32"),
]


@pytest.mark.parametrize(("extra", "field", "where"), REFUSED, ids=[r[1] for r in REFUSED])
def test_combinations_a_library_cannot_build_are_refused_in_one_line(base, tmp_path, monkeypatch, extra, field,
                                                                     where):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # hub weights: never the network, the cache has none of these
    base_recipe, base_paths = base
    if where == "recipe":
        with pytest.raises(RecipeError) as caught:
            variant_recipe(base_recipe, tmp_path, extra)
        assert_one_line_naming(caught.value, tmp_path / "tiny.yaml", field)
        return
    recipe = variant_recipe(base_recipe, tmp_path, extra)
    with pytest.raises(VitqError) as caught:
        rebuild(base_recipe, base_paths, recipe, tmp_path)
    assert_one_line_naming(caught.value, recipe.path, field)


def test_the_walk_covers_every_weight_and_sample_source():
    """A new source in the schema needs a case above: this fails until it has one."""
    walked_weights = {"file", "train", "hub", "random"}  # random: the base build
    walked_samples = {"held_out", "photos", "dir"}  # dir: the base build
    assert set(Weights.model_fields) == walked_weights
    assert set(choices(Samples, "builtin")) | {"dir"} == walked_samples
