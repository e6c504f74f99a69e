"""Gates: pure functions of the evaluation metrics and the recipe; and the manifest stage that applies them."""

from __future__ import annotations

import json
import shutil

import pytest

from vitq.check.gates import failures, run_checks
from vitq.errors import GateError
from vitq.variants import variants_for

from helpers_models import tiny_recipe


def metrics(recipe, **overrides):
    base = {"top1": 0.9, "top5": 1.0, "agreement": 1.0, "max_abs_logit_diff": 1e-6, "mean_abs_logit_diff": 1e-7, "n": 10}
    out = {v.id: dict(base) for v in variants_for(recipe)}
    for key, value in overrides.items():
        variant, metric = key.split("__")
        out[variant][metric] = value
    return out


def test_quantized_variants_get_accuracy_checks_and_exported_float_files_a_match_check(tmp_path):
    recipe = tiny_recipe(tmp_path, extra="weights: {file: w.safetensors}\n")
    names = [c["name"] for c in run_checks(recipe, metrics(recipe))]
    for variant in ("int8_eager", "int8", "optimized", "lite", "onnx_int8"):
        assert f"{variant}.agreement" in names and f"{variant}.accuracy_drop" in names
    assert "onnx_fp32.max_abs_logit_diff" in names and "onnx_fp32.agreement" in names
    assert not [n for n in names if n.startswith(("fp32.", "fp32_script."))]


def test_a_failed_check_is_one_line_with_value_and_threshold(tmp_path):
    recipe = tiny_recipe(tmp_path, extra="weights: {file: w.safetensors}\n")
    checks = run_checks(recipe, metrics(recipe, lite__top1=0.8, onnx_fp32__max_abs_logit_diff=0.5))
    assert failures(checks) == ["check failed: lite.accuracy_drop = 0.1, needs <= 0.01",
                                "check failed: onnx_fp32.max_abs_logit_diff = 0.5, needs <= 0.0001"]


def test_random_weights_make_accuracy_checks_not_applicable_but_keep_numerical_ones(tmp_path):
    recipe = tiny_recipe(tmp_path)
    checks = {c["name"]: c for c in run_checks(recipe, metrics(recipe, lite__top1=0.1, onnx_fp32__agreement=0.5))}
    assert checks["lite.accuracy_drop"]["passed"] is None and "not applicable" in checks["lite.accuracy_drop"]["note"]
    assert checks["onnx_fp32.agreement"]["passed"] is False


def test_the_manifest_stage_writes_a_failed_manifest_and_report_then_fails_in_one_line(tiny_build, tmp_path):
    from vitq.build.runner import run_stage
    from vitq.layout import ArtifactPaths
    from vitq.recipe import load_recipe

    folder = tmp_path / "copy"
    shutil.copytree(tiny_build.root.parent.parent, folder)
    recipe_file = folder / "tiny.yaml"
    recipe_file.write_text(recipe_file.read_text() + "checks: {onnx_atol: 1.0e-15}\n")
    paths = ArtifactPaths.for_recipe(folder / "artifacts", "tiny")
    with pytest.raises(GateError) as info:
        run_stage("manifest", load_recipe(recipe_file), paths)
    assert str(info.value).startswith("tiny: check failed: onnx_fp32.max_abs_logit_diff = ") and "needs <= 1e-15" in str(info.value)
    manifest = json.loads(paths.manifest.read_text())
    assert manifest["passed"] is False
    assert [c["name"] for c in manifest["checks"] if c["passed"] is False] == ["onnx_fp32.max_abs_logit_diff"]
    assert "FAILED" in paths.report.read_text().splitlines()[0]
