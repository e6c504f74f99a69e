"""A stage's fingerprint: the code it runs, the recipe fields it reads, the tools that shape its bytes."""

from __future__ import annotations

import shutil

import pytest

from vitq.check.versions import RECORDED_TOOLS, recorded_versions
from vitq.orchestration import fingerprint
from vitq.orchestration.fingerprint import code_closure, field_values, stage_fingerprint
from vitq.orchestration.pipeline import STAGES, stage_named, stages_for
from vitq.recipe import load_recipe

from helpers_models import tiny_recipe


def test_a_stage_runs_its_module_and_what_it_imports_not_unrelated_code():
    assert "vitq.model.training" in code_closure("vitq.stages.fp32")
    optimized = code_closure("vitq.stages.optimized")
    assert "vitq.stages.optimized" in optimized and "vitq.model.torch_setup" in optimized
    assert "vitq.model.training" not in optimized and "vitq.stages.fp32" not in optimized
    assert "vitq.check.evaluate" in code_closure("vitq.stages.eval")  # imported inside vitq.stages.eval


@pytest.fixture
def package_copy(tmp_path, monkeypatch):
    """A private copy of the vitq sources that fingerprints are computed from."""
    copy = tmp_path / "vitq"
    shutil.copytree(fingerprint.PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(fingerprint, "PACKAGE_DIR", copy)
    for cached in (fingerprint._direct_imports, fingerprint.code_closure, fingerprint.code_digest):
        cached.cache_clear()
    yield copy
    for cached in (fingerprint._direct_imports, fingerprint.code_closure, fingerprint.code_digest):
        cached.cache_clear()


def digests() -> dict[str, str]:
    for cached in (fingerprint._direct_imports, fingerprint.code_closure, fingerprint.code_digest):
        cached.cache_clear()
    return {s.name: fingerprint.code_digest(s.module) for s in STAGES}


def changed_by(edit) -> set[str]:
    before = digests()
    edit()
    after = digests()
    return {name for name in before if before[name] != after[name]}


def test_editing_a_stage_module_changes_only_that_stages_code_digest(package_copy):
    def edit():
        with open(package_copy / "stages" / "optimized.py", "a") as fh:
            fh.write("# an edit\n")

    assert changed_by(edit) == {"optimized"}


def test_editing_shared_code_changes_every_stage_that_imports_it_and_not_training(package_copy):
    def edit():
        with open(package_copy / "model" / "convert.py", "a") as fh:
            fh.write("# an edit\n")

    changed = changed_by(edit)
    assert {"int8", "eval"} <= changed and not {"fp32", "samples", "manifest"} & changed


def test_editing_export_method_changes_int8_but_not_the_onnx_export(tmp_path):
    base = tiny_recipe(tmp_path, "a")
    traced = tiny_recipe(tmp_path, "b", extra="export: {method: trace}\n")
    for stage, differs in (("int8", True), ("eval", True), ("onnx_fp32", False), ("samples", False)):
        one = field_values(base, stage_named(stage).fields)
        two = field_values(traced, stage_named(stage).fields)
        assert (one != two) is differs, stage


def test_evaluation_does_not_depend_on_the_recipes_thread_count(tmp_path):
    one = tiny_recipe(tmp_path / "a")
    two = load_recipe(tmp_path / "a" / "tiny.yaml").model_copy(update={"threads": 2})
    assert stage_fingerprint(stage_named("eval"), one) == stage_fingerprint(stage_named("eval"), two)
    assert stage_fingerprint(stage_named("fp32"), one) != stage_fingerprint(stage_named("fp32"), two)


def test_a_recipe_in_another_folder_has_the_same_fingerprints(tmp_path):
    """Paths in the recipe count relative to it: a checkout elsewhere reuses doit state and cache entries."""
    here, there = tiny_recipe(tmp_path / "here"), tiny_recipe(tmp_path / "elsewhere" / "there")
    for stage in stages_for(here):
        assert stage_fingerprint(stage, here) == stage_fingerprint(stage, there), stage.name
    moved = tiny_recipe(tmp_path / "moved", extra="samples: {dir: ../here/images, labels: ../here/images/labels.csv}\n")
    assert stage_fingerprint(stage_named("samples"), moved) != stage_fingerprint(stage_named("samples"), here)


def test_fingerprints_include_the_versions_of_the_tools_a_stage_uses(tmp_path):
    recipe = tiny_recipe(tmp_path)
    tools = stage_fingerprint(stage_named("samples"), recipe)["tools"]
    assert {"python", "scikit-learn", "scikit-image", "pillow"} <= set(tools)
    assert "onnx" in stage_fingerprint(stage_named("onnx_int8"), recipe)["tools"]


def test_the_manifest_records_every_tool_that_shapes_bytes():
    recorded = recorded_versions()
    assert {"scikit-learn", "scikit-image", "torch", "onnxruntime", "vitq", "python"} <= set(recorded)
    assert set(RECORDED_TOOLS) <= set(recorded) and "missing" not in recorded.values()
