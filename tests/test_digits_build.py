"""The default recipe end to end through doit: a trained ViT whose mobile file still does its job."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import jsonschema
import numpy as np
import pytest
import torch
from torch.jit.mobile import _load_for_lite_interpreter

from vitq.check import manifest as mf
from vitq.fileio import sha256_file
from vitq.model.preprocess import load_batch
from vitq.model.samples import read_labels
from vitq.orchestration.pipeline import stages_for
from vitq.recipe import load_recipe
from vitq.variants import variants_for

from conftest import DIGITS

pytestmark = pytest.mark.e2e


def vitq(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vitq.cli", *args], capture_output=True, text=True, timeout=600)


def test_build_prints_a_line_per_stage_and_the_summary_table(digits_build):
    output = (digits_build.parent / "build-output.txt").read_text()
    for stage in stages_for(load_recipe(DIGITS)):  # the two .pte candidates' stages among them
        assert f"digits:{stage.name}" in output
    assert "| variant | file | size | vs fp32 | top-1 |" in output
    assert "| lite | int8.ptl |" in output
    first_sample = read_labels(digits_build / "samples" / "labels.csv")[0][0]
    assert f"reloaded in the lite interpreter and run on {first_sample}" in output  # before the stage is done


def built(digits_build):
    return variants_for(load_recipe(DIGITS))


def test_artifacts_are_all_there(digits_build):
    for name in [v.file for v in built(digits_build) if v.file] + ["eval.json", "manifest.json", "report.md",
                                                                  "samples/labels.csv", "calibration/images.txt"]:
        assert (digits_build / name).is_file(), name
    assert len(read_labels(digits_build / "samples" / "labels.csv")) == 360


def test_lite_file_classifies_held_out_digits_like_fp32(digits_build):
    """Independent of vitq's evaluator: load the .ptl in the lite interpreter and score it ourselves."""
    recipe = load_recipe(DIGITS)
    rows = read_labels(digits_build / "samples" / "labels.csv")
    images = load_batch(recipe.preprocess, [digits_build / "samples" / name for name, _ in rows])
    labels = np.array([accepted[0] for _, accepted in rows])
    torch.backends.quantized.engine = recipe.quantize.engine  # weights are packed at load: use the phone's engine
    lite = _load_for_lite_interpreter(str(digits_build / "int8.ptl"))
    torch.set_num_threads(1)  # qnnpack at batch 1 crawls with a 2-thread pool on 2 busy cores
    with torch.no_grad():  # one image at a time, as a phone runs it
        predicted = np.array([lite(image[None]).argmax(1).item() for image in images])
    lite_acc = (predicted == labels).mean()
    manifest = json.loads((digits_build / "manifest.json").read_text())
    fp32_acc = manifest["accuracy"]["fp32"]["top1"]
    assert fp32_acc >= 0.95
    assert abs(lite_acc - fp32_acc) <= 0.01
    assert abs(lite_acc - manifest["accuracy"]["lite"]["top1"]) < 1e-6


def test_manifest_validates_and_its_checksums_match_the_files(digits_build):
    manifest = json.loads((digits_build / "manifest.json").read_text())
    jsonschema.validate(manifest, mf.schema())
    shipped = [v.id for v in built(digits_build) if v.shipped and v.id != "pte"]  # pte: the candidate kept back
    assert [a["name"] for a in manifest["artifacts"]] == shipped
    for artifact in manifest["artifacts"]:
        file = digits_build / artifact["path"]
        assert artifact["sha256"] == sha256_file(file)
        assert artifact["bytes"] == file.stat().st_size
    assert manifest["passed"] is True


def test_manifest_meets_the_accuracy_promises(digits_build):
    manifest = json.loads((digits_build / "manifest.json").read_text())
    accuracy = manifest["accuracy"]
    assert accuracy["fp32"]["top1"] >= 0.95
    for variant in [v.id for v in built(digits_build) if v.quantized]:
        assert accuracy["fp32"]["top1"] - accuracy[variant]["top1"] <= 0.01, variant
        assert accuracy[variant]["agreement"] >= 0.98, variant
    assert accuracy["onnx_fp32"]["max_abs_logit_diff"] <= 1e-4
    assert accuracy["onnx_fp32"]["agreement"] == 1.0
    assert all(c["passed"] is True for c in manifest["checks"])


def test_manifest_holds_no_absolute_path_and_no_time(digits_build):
    text = (digits_build / "manifest.json").read_text()
    assert str(digits_build) not in text and "/work/" not in text and "/tmp/" not in text
    strings = []

    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                strings.append(k)
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
        elif isinstance(node, str):
            strings.append(node)

    walk(json.loads(text))
    assert not [s for s in strings if s.startswith("/")]
    assert not re.search(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d", text)
    assert not [s for s in strings if re.search(r"(^|_)(time|date|timestamp|created|finished|seconds)($|_)", s)]


def test_report_md_matches_the_manifest(digits_build):
    report = (digits_build / "report.md").read_text()
    assert report.startswith("# digits 1.0.0: PASSED")
    assert "| lite | int8.ptl |" in report and "## Checks" in report


def test_verify_passes_on_the_build(digits_build):
    proc = vitq("verify", str(digits_build / "manifest.json"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK" in proc.stdout


def test_doit_bench_on_digits_writes_json_md_and_png(digits_build):
    """What `doit bench:digits` does, through doit, with few repetitions (the figures are not asserted)."""
    from PIL import Image

    from conftest import run_doit

    proc = run_doit("bench:digits", "--repeats", "2", "--warmup", "1", artifacts=digits_build.parent)
    assert ".  bench:digits" in proc.stdout
    report = json.loads((digits_build / "bench.json").read_text())
    variants = {v["id"] for v in report["variants"]}
    assert {v.id for v in built(digits_build)} <= variants
    with Image.open(digits_build / "candidates.png") as png:  # the two ExecuTorch candidates side by side
        assert png.format == "PNG"
    assert report["repeats"] == 2
    with Image.open(digits_build / "bench.png") as png:
        assert png.format == "PNG"
    assert "int8.ptl" in (digits_build / "bench.md").read_text()


def test_the_4_bit_candidate_ships_within_a_point_of_fp32_at_a_third_of_its_bytes(digits_build):
    """[8da4w, dynamic_int8]: 8da4w passes its gates, so it ships; both are recorded, the int8 one kept back."""
    manifest = json.loads((digits_build / "manifest.json").read_text())
    first, second = manifest["candidates"]
    assert (first["strategy"], second["strategy"]) == ("8da4w", "dynamic_int8")
    assert first["shipped"] and first["passed"] and not second["shipped"]
    assert manifest["accuracy"]["fp32"]["top1"] - first["top1"] <= 0.01
    assert first["size_ratio_vs_fp32"] <= 0.32 < second["size_ratio_vs_fp32"]
    assert manifest["calibration"]["images"] == 64 and manifest["calibration"]["source"] == "training split"
    names = {a["path"] for a in manifest["artifacts"]}
    assert "8da4w.pte" in names and "int8.pte" not in names and (digits_build / "int8.pte").is_file()
    assert "## ExecuTorch candidates" in (digits_build / "report.md").read_text()
