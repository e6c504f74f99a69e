"""Gates on a small random-weights model built through doit with the user's own sample folder."""

from __future__ import annotations

import json

import jsonschema

from conftest import copy_build, run_doit, tasks_ran
from vitq import manifest as mf


def test_random_weights_build_passes_numerical_gates_and_marks_accuracy_not_applicable(built_tiny):
    recipes, root = built_tiny
    manifest = json.loads((root / "tiny" / "manifest.json").read_text())
    jsonschema.validate(manifest, mf.schema())
    assert manifest["passed"] is True and manifest["weights"]["trained"] is False
    checks = {c["name"]: c for c in manifest["checks"]}
    assert checks["onnx_fp32.max_abs_logit_diff"]["passed"] is True
    assert checks["lite.agreement"]["passed"] is None and "not applicable" in checks["lite.agreement"]["note"]
    assert manifest["samples"]["images"] == 6 and (root / "tiny" / "samples" / "img1.png").is_file()
    assert "untrained random weights" in (root / "tiny" / "report.md").read_text()


def test_an_impossible_threshold_fails_the_build_with_one_line_and_a_failed_manifest(built_tiny, tmp_path):
    recipes, root = copy_build(built_tiny, tmp_path)
    recipe = recipes / "tiny.yaml"
    recipe.write_text(recipe.read_text() + "checks: {onnx_atol: 1.0e-15}\n")
    proc = run_doit("build:tiny", recipes=recipes, artifacts=root, check=False)
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output
    lines = [l for l in output.splitlines() if "check failed: onnx_fp32.max_abs_logit_diff" in l]
    assert len(lines) == 1 and "needs <= 1e-15" in lines[0]
    assert "manifest:tiny" in tasks_ran(proc)
    manifest = json.loads((root / "tiny" / "manifest.json").read_text())
    assert manifest["passed"] is False
    assert [c["name"] for c in manifest["checks"] if c["passed"] is False] == ["onnx_fp32.max_abs_logit_diff"]
    assert "FAILED" in (root / "tiny" / "report.md").read_text().splitlines()[0]
    again = run_doit("build:tiny", recipes=recipes, artifacts=root, check=False)
    assert again.returncode != 0 and "manifest:tiny" in tasks_ran(again)


def test_editing_samples_reruns_only_the_stages_that_read_them(built_tiny, tmp_path):
    recipes, root = copy_build(built_tiny, tmp_path)
    run_doit("build:tiny", recipes=recipes, artifacts=root)  # doit's state names absolute paths: settle the copy
    labels = recipes / "images" / "labels.csv"
    labels.write_text(labels.read_text().replace("img0.jpg,0", "img0.jpg,3"))
    proc = run_doit("build:tiny", recipes=recipes, artifacts=root)
    # lite runs the reloaded .ptl on the first sample before it is done; no model is rebuilt or re-exported
    assert tasks_ran(proc) - {"build:tiny"} == {"samples:tiny", "lite:tiny", "eval:tiny", "manifest:tiny"}


def test_a_corrupt_sample_image_is_one_line_naming_it(built_tiny, tmp_path):
    recipes, root = copy_build(built_tiny, tmp_path)
    (recipes / "images" / "img3.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    proc = run_doit("build:tiny", recipes=recipes, artifacts=root, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stdout + proc.stderr
    assert "img3.png: not a readable image" in proc.stdout + proc.stderr
