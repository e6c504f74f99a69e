"""Gates: pure functions of the evaluation metrics and the recipe; and the manifest stage that applies them."""

from __future__ import annotations

import json
import shutil

import pytest

from vitq.check.gates import failures, run_checks
from vitq.errors import GateError, RecipeError
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


def test_the_onnx_float_tolerance_grows_with_the_logits_scale(tmp_path):
    """Untrained MobileOne: logits up to 2e7, ONNX Runtime 10 off torch (float32 rounding, 5e-7 of the scale);
    a trained model's logits of about 10 keep the absolute 1e-4."""
    recipe = tiny_recipe(tmp_path)

    def onnx_check(largest, diff):
        found = metrics(recipe, fp32__max_abs_logit=largest, onnx_fp32__max_abs_logit_diff=diff)
        return next(c for c in run_checks(recipe, found) if c["name"] == "onnx_fp32.max_abs_logit_diff")

    assert (onnx_check(2.1e7, 10.0)["threshold"], onnx_check(2.1e7, 10.0)["passed"]) == (210.0, True)
    assert (onnx_check(83.0, 2.6e-4)["threshold"], onnx_check(83.0, 2.6e-4)["passed"]) == (0.00083, True)
    assert (onnx_check(2.1e7, 500.0)["passed"], onnx_check(9.5, 2e-4)["threshold"]) == (False, 1e-4)


def test_random_weights_make_accuracy_checks_not_applicable_but_keep_numerical_ones(tmp_path):
    recipe = tiny_recipe(tmp_path)
    checks = {c["name"]: c for c in run_checks(recipe, metrics(recipe, lite__top1=0.1, onnx_fp32__agreement=0.5))}
    assert checks["lite.accuracy_drop"]["passed"] is None and "not applicable" in checks["lite.accuracy_drop"]["note"]
    assert checks["onnx_fp32.agreement"]["passed"] is False


def test_the_manifest_stage_writes_a_failed_manifest_and_report_then_fails_in_one_line(tiny_build, tmp_path):
    from vitq.layout import ArtifactPaths
    from vitq.orchestration.runner import run_stage
    from vitq.recipe import load_recipe

    folder = tmp_path / "copy"
    shutil.copytree(tiny_build.root.parent.parent, folder)
    recipe_file = folder / "tiny.yaml"
    recipe_file.write_text(recipe_file.read_text() + "checks: {onnx_atol: 1.0e-15, onnx_rtol: 0}\n")
    paths = ArtifactPaths.for_recipe(folder / "artifacts", "tiny")
    with pytest.raises(GateError) as info:
        run_stage("manifest", load_recipe(recipe_file), paths)
    assert str(info.value).startswith("tiny: check failed: onnx_fp32.max_abs_logit_diff = ") and "needs <= 1e-15" in str(info.value)
    manifest = json.loads(paths.manifest.read_text())
    assert manifest["passed"] is False
    assert [c["name"] for c in manifest["checks"] if c["passed"] is False] == ["onnx_fp32.max_abs_logit_diff"]
    assert "FAILED" in paths.report.read_text().splitlines()[0]


TODAYS_GRAPH = {  # what executorch 1.3.1 left outside XNNPACK on a timm ViT before vitq's rewrites
    "backend": "XnnpackBackend", "delegated_subgraphs": 62, "delegated_nodes": 668, "portable_nodes": 61,
    "portable_operators": {"aten_expand_copy_default": 49, "aten_native_layer_norm_default": 12},
    "portable_reasons": {"aten_expand_copy_default": "XNNPACK has no expand_copy"},
}


def test_the_pte_gate_passes_a_graph_within_the_portable_budget_and_names_what_is_left(tmp_path):
    from vitq.check.gates import delegation_check

    recipe = tiny_recipe(tmp_path)
    assert recipe.checks.max_portable_nodes == 5
    whole = dict(TODAYS_GRAPH, portable_nodes=1, portable_operators={"aten_select_copy_int": 1}, portable_reasons={})
    check = delegation_check(recipe, whole)
    assert check["passed"] is True and check["name"] == "pte.portable_nodes" and check["value"] == 1
    assert check["note"] == "left on portable kernels: aten_select_copy_int x1 (no reason given)"
    everything = dict(TODAYS_GRAPH, portable_nodes=0, portable_operators={})
    assert "note" not in delegation_check(recipe, everything)


def test_a_graph_over_the_portable_budget_fails_in_one_line_naming_each_operator_and_why(tmp_path):
    from vitq.check.gates import delegation_check

    [line] = failures([delegation_check(tiny_recipe(tmp_path), TODAYS_GRAPH)])
    assert line == ("check failed: pte.portable_nodes = 61, needs <= 5: left on portable kernels: "
                    "aten_expand_copy_default x49 (XNNPACK has no expand_copy), "
                    "aten_native_layer_norm_default x12 (no reason given)")


def test_the_manifest_stage_applies_the_pte_gate_and_the_report_names_the_operators(tiny_build, tmp_path):
    from vitq.layout import ArtifactPaths
    from vitq.orchestration.runner import run_stage
    from vitq.recipe import load_recipe

    folder = tmp_path / "copy"
    shutil.copytree(tiny_build.root.parent.parent, folder)
    paths = ArtifactPaths.for_recipe(folder / "artifacts", "tiny")
    paths.delegation.write_text(json.dumps(TODAYS_GRAPH))
    with pytest.raises(GateError) as info:
        run_stage("manifest", load_recipe(folder / "tiny.yaml"), paths)
    assert "\n" not in str(info.value) and "pte.portable_nodes = 61, needs <= 5" in str(info.value)
    assert "aten_expand_copy_default x49 (XNNPACK has no expand_copy)" in str(info.value)
    manifest = json.loads(paths.manifest.read_text())
    assert [c["name"] for c in manifest["checks"] if c["passed"] is False] == ["pte.portable_nodes"]
    assert "aten_expand_copy_default x49 (XNNPACK has no expand_copy)" in paths.report.read_text()


def test_a_recipe_sets_its_own_portable_budget(tmp_path):
    from vitq.check.gates import delegation_check

    recipe = tiny_recipe(tmp_path, extra="checks: {max_portable_nodes: 61}\n")
    assert delegation_check(recipe, TODAYS_GRAPH)["passed"] is True
    with pytest.raises(RecipeError, match="checks.max_portable_nodes"):
        tiny_recipe(tmp_path / "b", extra="checks: {max_portable_nodes: -1}\n")
