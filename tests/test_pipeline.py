"""The pipeline: stage inputs and outputs come from the variant table, and each stage reads only what it declares."""

from __future__ import annotations

import importlib

from vitq.layout import SAMPLES, TORCHSCRIPT_RECORD, ArtifactPaths
from vitq.orchestration.pipeline import STAGES, stage_named, stages_for
from vitq.recipe import load_recipe
from vitq.variants import variants_for

from conftest import write_recipe
from helpers_models import TINY_TIMM, tiny_recipe, undeclared_reads


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
    assert files | {SAMPLES, "eval", "delegation:pte", TORCHSCRIPT_RECORD} == set(stage_named("manifest").inputs(recipe, paths))


def test_a_users_sample_folder_is_a_stage_input_file_by_file(tmp_path):
    recipe = tiny_recipe(tmp_path)
    inputs = stage_named("samples").inputs(recipe, ArtifactPaths(tmp_path / "out"))
    assert inputs["labels"] == tmp_path / "images" / "labels.csv"
    assert inputs["image:img0.jpg"] == tmp_path / "images" / "img0.jpg" and len(inputs) == 7


# ---------------------------------------------------------------- each stage reads only its declared fields


def test_each_stage_reads_only_the_recipe_fields_it_declares(tiny_field_reads):
    """Every stage of the tiny build ran on a recipe that records what it reads (helpers_models.recording_field_reads);
    the switch walk (test_switches) checks the same for every stage each combination reruns, training included."""
    assert set(tiny_field_reads) == {s.name for s in stages_for(tiny_field_reads.recipe)}
    assert undeclared_reads(tiny_field_reads) == {}


def test_stage_names_are_unique_and_every_stage_has_a_module():
    names = [s.name for s in STAGES]
    assert len(names) == len(set(names))
    for stage in STAGES:
        assert importlib.util.find_spec(stage.module) is not None


def test_the_held_out_fields_are_none_for_recipes_without_training(tmp_path):
    from vitq.orchestration.fingerprint import field_values

    recipe = load_recipe(write_recipe(tmp_path, "x", TINY_TIMM.format(extra="")))
    values = field_values(recipe, stage_named("samples").fields)
    assert values["weights.train.seed"] is None and values["samples"]["dir"].endswith("images")
