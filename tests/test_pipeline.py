"""The pipeline: stage inputs and outputs come from the variant table, and each stage reads only what it declares."""

from __future__ import annotations

import importlib
import shutil
from typing import Any

import pytest
from pydantic import BaseModel

from vitq.layout import SAMPLES, ArtifactPaths
from vitq.pipeline import STAGES, stage_named, stages_for
from vitq.recipe import load_recipe
from vitq.torch_setup import configure_torch
from vitq.variants import variants_for

from conftest import DIGITS, write_recipe
from helpers_models import TINY_TIMM, tiny_recipe


def test_lite_reads_optimized_when_built_and_int8_otherwise(tmp_path):
    paths = ArtifactPaths(tmp_path)
    optimized = tiny_recipe(tmp_path / "a")
    plain = tiny_recipe(tmp_path / "b", extra="mobile: {optimize: false}\n")
    lite = stage_named("lite")
    assert lite.inputs(optimized, paths) == {"optimized": tmp_path / "int8.optimized.pt", SAMPLES: paths.samples_labels}
    assert lite.inputs(plain, paths) == {"int8": tmp_path / "int8.pt", SAMPLES: paths.samples_labels}
    assert "optimized" not in [s.name for s in stages_for(plain)]


def test_every_stage_reads_only_files_written_earlier_or_outside_the_build(tmp_path):
    recipe = tiny_recipe(tmp_path)
    paths = ArtifactPaths(tmp_path / "out")
    written = set()
    for stage in stages_for(recipe):
        for path in stage.inputs(recipe, paths).values():
            assert path in written or not path.is_relative_to(paths.root), (stage.name, path)
        outputs = set(stage.outputs(recipe, paths).values())
        assert not outputs & written, stage.name
        written |= outputs


def test_evaluation_and_manifest_read_every_variant_file(tmp_path):
    recipe = tiny_recipe(tmp_path)
    paths = ArtifactPaths(tmp_path / "out")
    files = {v.id for v in variants_for(recipe) if v.file}
    assert files | {SAMPLES} == set(stage_named("eval").inputs(recipe, paths))
    assert files | {SAMPLES, "eval", "delegation"} == set(stage_named("manifest").inputs(recipe, paths))


def test_a_users_sample_folder_is_a_stage_input_file_by_file(tmp_path):
    recipe = tiny_recipe(tmp_path)
    inputs = stage_named("samples").inputs(recipe, ArtifactPaths(tmp_path / "out"))
    assert inputs["labels"] == tmp_path / "images" / "labels.csv"
    assert inputs["image:img0.jpg"] == tmp_path / "images" / "img0.jpg" and len(inputs) == 7


# ---------------------------------------------------------------- each stage reads only its declared fields


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
        if isinstance(value, BaseModel):
            return RecordingRecipe(value, self._log, dotted + ".")
        self._log.add(dotted)
        return value


def covered(read: str, declared: tuple[str, ...]) -> bool:
    return "*" in declared or any(read == d or read.startswith(d + ".") for d in declared)


@pytest.mark.parametrize("source", ["tiny", "digits"])
def test_each_stage_reads_only_the_recipe_fields_it_declares(tmp_path, source):
    if source == "tiny":
        recipe = tiny_recipe(tmp_path)
    else:  # the training recipe, one short epoch: reads weights.train, held-out samples (the .pte: see tiny);
        # engine x86: qnnpack's x86 kernels would spend most of the test evaluating
        recipe = load_recipe(write_recipe(tmp_path, "quick", f"extends: {DIGITS}\nweights: {{train: {{epochs: 1, holdout: 0.05}}}}\n"
                                          "executorch: {enabled: false}\nquantize: {engine: x86}\n"))
    configure_torch(recipe)
    paths = ArtifactPaths.for_recipe(tmp_path / "out", recipe.name)
    for stage in stages_for(recipe):
        log: set[str] = set()
        module = importlib.import_module(stage.module)
        module.run(RecordingRecipe(recipe, log), stage.inputs(recipe, paths), stage.outputs(recipe, paths))
        undeclared = sorted(r for r in log if not covered(r, stage.fields))
        assert undeclared == [], f"{stage.name} reads {undeclared} but declares {stage.fields}"
    shutil.rmtree(paths.root)


def test_stage_names_are_unique_and_every_stage_has_a_module():
    names = [s.name for s in STAGES]
    assert len(names) == len(set(names))
    for stage in STAGES:
        assert importlib.util.find_spec(stage.module) is not None


def test_the_held_out_fields_are_none_for_recipes_without_training(tmp_path):
    from vitq.fingerprint import field_values

    recipe = load_recipe(write_recipe(tmp_path, "x", TINY_TIMM.format(extra="")))
    values = field_values(recipe, stage_named("samples").fields)
    assert values["weights.train.seed"] is None and values["samples"]["dir"].endswith("images")
