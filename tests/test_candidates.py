"""ExecuTorch candidates (issue 22): a recipe lists quantization strategies in order of preference; each is built,
evaluated and judged; the first that passes its gates ships; calibration images are declared and never the samples;
mixed precision keeps the most sensitive layers in float when a candidate disagrees with fp32.

The model is the tiny ViT with weights that break 4-bit weights and nothing else: each row of the classifier has one
weight 20x the others, on a feature its LayerNorm always zeroes. fp32 and int8 (127 steps a side) ignore it; int4
(7 steps a side) rounds every other weight of the row to zero, so 8da4w's top-1 follows the bias alone.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from vitq.check.gates import choose_candidate
from vitq.errors import GateError, InputError, RecipeError
from vitq.layout import ArtifactPaths
from vitq.model import networks
from vitq.model.runtimes import load_pte
from vitq.orchestration.runner import run_stage
from vitq.recipe import load_recipe
from vitq.ship.predict import predict
from vitq.ship.verify import verify

from conftest import write_recipe
from helpers_models import TINY_TIMM, build, make_images, tiny_recipe


def calibration_images(folder: Path, count: int = 6) -> Path:
    """Noise images unlike the samples (another seed)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, size=(36 + 3 * i, 40, 3), dtype=np.uint8)).save(folder / f"cal{i}.png")
    return folder


def int4_breaking_weights(folder: Path) -> Path:
    """The tiny ViT's random weights, with the classifier outliers described above."""
    torch.manual_seed(7)  # the same weights on every run
    model = networks.create_model(tiny_recipe(folder / "base"))
    state = {k: v.clone().contiguous() for k, v in model.state_dict().items()}
    state["norm.weight"][0], state["norm.bias"][0] = 0.0, 0.0  # feature 0 is always zero after the last LayerNorm
    head = state["head.weight"]
    head[:, 0] = 20 * head[:, 1:].abs().max(dim=1).values
    state["head.bias"] = torch.linspace(-0.05, 0.05, head.shape[0])  # what int4's top-1 falls back on
    save_file(state, str(folder / "weights.safetensors"))
    return folder / "weights.safetensors"


def candidates_recipe(folder: Path, quantize: str, max_float_layers: int):
    weights = int4_breaking_weights(folder)
    calibration_images(folder / "calib")
    return tiny_recipe(folder, extra=f"weights: {{file: {weights.name}}}\ncalibration: {{dir: calib}}\n"
                                     f"executorch: {{quantize: {quantize}, max_float_layers: {max_float_layers}}}\n")


@pytest.fixture(scope="module")
def first_fails(tmp_path_factory):
    """[8da4w, static_int8, dynamic_int8] without mixed precision: 8da4w misses its gates, static_int8 ships."""
    folder = tmp_path_factory.mktemp("first-fails")
    recipe = candidates_recipe(folder, "[8da4w, static_int8, dynamic_int8]", max_float_layers=0)
    return recipe, build(recipe, folder / "artifacts")


@pytest.mark.heavy
def test_the_first_candidate_that_passes_ships_and_every_candidate_is_recorded(first_fails):
    recipe, paths = first_fails
    manifest = json.loads(paths.manifest.read_text())
    records = {c["strategy"]: c for c in manifest["candidates"]}
    assert [c["strategy"] for c in manifest["candidates"]] == ["8da4w", "static_int8", "dynamic_int8"]
    assert not records["8da4w"]["passed"] and "pte_8da4w.agreement" in records["8da4w"]["why"]
    assert records["static_int8"]["shipped"] and "pte_8da4w did not" in records["static_int8"]["why"]
    assert records["dynamic_int8"]["passed"] and not records["dynamic_int8"]["shipped"]
    assert manifest["passed"] is True
    shipped = [a["name"] for a in manifest["artifacts"] if a["format"] == "executorch"]
    assert shipped == ["pte_static_int8"]  # the others stay in the build folder, unlisted as artifacts
    for c in manifest["candidates"]:
        assert (paths.root / c["path"]).is_file() and c["bytes"] == (paths.root / c["path"]).stat().st_size
        assert {"top1", "agreement", "max_abs_logit_diff", "size_ratio_vs_fp32"} <= set(c)
    assert records["8da4w"]["bytes"] < records["dynamic_int8"]["bytes"]
    report = paths.report.read_text()
    assert "## ExecuTorch candidates" in report and "| static_int8 | `static_int8.pte`" in report
    # the shipped program runs in ExecuTorch's runtime; verify re-runs what shipped; predict takes any candidate
    assert load_pte(paths.root / "static_int8.pte")(torch.zeros(1, 3, 32, 32)).shape == (1, 5)
    assert verify(paths.manifest) == []
    image = paths.samples_dir / "img1.png"
    for candidate in ("static_int8.pte", "8da4w.pte"):
        [(got, best)] = predict(paths.root / candidate, [image], top=2)
        assert got == image and len(best) == 2


@pytest.mark.heavy
def test_static_int8_is_calibrated_on_the_declared_images_recorded_by_hash(first_fails):
    recipe, paths = first_fails
    manifest = json.loads(paths.manifest.read_text())
    assert manifest["calibration"]["images"] == 6 and manifest["calibration"]["source"] == "folder"
    listed = paths.calibration_list.read_text().split()
    assert listed == [f"cal{i}.png" for i in range(6)]
    assert len(manifest["calibration"]["sha256"]) == 64


@pytest.mark.heavy
def test_when_no_candidate_passes_the_build_fails_one_line_each_and_the_manifest_says_so(first_fails, tmp_path):
    recipe, paths = first_fails
    shutil.copytree(paths.root.parent.parent, tmp_path / "copy")
    strict = load_recipe(tmp_path / "copy" / "tiny.yaml").model_copy(
        update={"checks": recipe.checks.model_copy(update={"max_portable_nodes": 0, "min_agreement": 1.0,
                                                           "max_accuracy_drop": 0.0})})
    copy = ArtifactPaths.for_recipe(tmp_path / "copy" / "artifacts", "tiny")
    delegation = json.loads(copy.delegation.read_text())
    copy.delegation.write_text(json.dumps({**delegation, "portable_nodes": 3, "portable_operators": {"aten_x": 3}}))
    for name in ("pte-static-int8", "pte-8da4w"):
        record = copy.root / f"{name}-delegation.json"
        record.write_text(json.dumps({**json.loads(record.read_text()), "portable_nodes": 2,
                                      "portable_operators": {"aten_y": 2}}))
    with pytest.raises(GateError) as info:
        run_stage("manifest", strict, copy)
    lines = str(info.value).splitlines()
    assert lines[0] == "tiny: no .pte candidate passes its gates (manifest written, passed: false)"
    assert [line.split(" missed ")[0] for line in lines[1:]] == [
        "tiny: candidate pte_8da4w", "tiny: candidate pte_static_int8", "tiny: candidate pte"]
    assert "pte.portable_nodes = 3, needs <= 0" in lines[3]
    manifest = json.loads(copy.manifest.read_text())
    assert manifest["passed"] is False and not any(c["shipped"] for c in manifest["candidates"])


@pytest.mark.heavy
def test_mixed_precision_keeps_the_most_sensitive_layer_in_float_and_then_passes(tmp_path):
    recipe = candidates_recipe(tmp_path, "[8da4w, dynamic_int8]", max_float_layers=2)
    paths = build(recipe, tmp_path / "artifacts")
    manifest = json.loads(paths.manifest.read_text())
    first = manifest["candidates"][0]
    assert first["strategy"] == "8da4w" and first["shipped"] and first["keep_float"] == ["head"]
    assert "head" in paths.report.read_text().split("## ExecuTorch candidates")[1].split("## Checks")[0]
    record = json.loads(paths.delegation_of("pte_8da4w").read_text())["quantization"]
    assert record["keep_float"] == ["head"] and record["calibration_agreement"] >= recipe.checks.min_agreement


def test_choosing_a_candidate_reads_only_its_own_checks_in_the_recipes_order():
    checks = [{"name": "pte_8da4w.agreement", "passed": False, "value": 0.5, "threshold": 0.98, "op": ">="},
              {"name": "pte.agreement", "passed": None, "value": 1.0, "threshold": 0.98, "op": ">="},
              {"name": "pte_none.agreement", "passed": True, "value": 1.0, "threshold": 1.0, "op": ">="},
              {"name": "onnx_fp32.agreement", "passed": False, "value": 0.0, "threshold": 1.0, "op": ">="}]
    chosen, records = choose_candidate(["pte_8da4w", "pte", "pte_none"], checks)
    assert chosen == "pte" and [r["shipped"] for r in records] == [False, True, False]
    assert records[0]["why"] == "missed pte_8da4w.agreement = 0.5, needs >= 0.98"
    assert records[2]["why"] == "passes its gates, but pte comes first in executorch.quantize"
    assert choose_candidate(["pte_8da4w"], checks[:1])[0] is None


def test_calibration_images_that_are_samples_are_refused_in_one_line(tmp_path):
    recipe = tiny_recipe(tmp_path, extra="executorch: {quantize: static_int8}\ncalibration: {dir: images}\n")
    paths = build(recipe, tmp_path / "artifacts", stages=["samples"])
    with pytest.raises(RecipeError) as info:
        run_stage("calibration", recipe, paths)
    assert str(info.value).startswith(f"{tmp_path / 'tiny.yaml'}: calibration.dir: img0.jpg is the sample image")
    assert "\n" not in str(info.value) and not paths.calibration_list.exists()


@pytest.mark.parametrize(("extra", "message"), [
    ("executorch: {quantize: []}\n", "executorch.quantize: an empty list of candidates"),
    ("executorch: {quantize: [8da4w, 8da4w]}\n", "executorch.quantize: 8da4w is listed twice"),
    ("executorch: {quantize: [8da4w, auto]}\n", "executorch.quantize: unknown strategy 'auto'"),
    ("executorch: {quantize: static_int8}\n", "static_int8 needs calibration images"),
    ("calibration: {split: train}\n", "calibration: {split: train} needs weights: {train: ...}"),
    ("calibration: {count: 3}\n", "calibration: expected exactly one of {split: train} or {dir: folder}"),
])
def test_bad_candidates_and_calibration_are_one_line_listing_what_is_known(tmp_path, extra, message):
    with pytest.raises(RecipeError) as info:
        tiny_recipe(tmp_path, extra=extra)
    assert message in str(info.value) and "\n" not in str(info.value)
    if "strategy" in message or "listed" in message or "empty" in message:
        assert "none, dynamic_int8, 8da4w, static_int8 or auto" in str(info.value)


def test_auto_tries_the_smallest_program_first_and_static_only_with_calibration(tmp_path):
    assert tiny_recipe(tmp_path / "a", extra="executorch: {quantize: auto}\n").pte_candidates == (
        "8da4w", "dynamic_int8", "none")
    calibrated = tiny_recipe(tmp_path / "b", extra="executorch: {quantize: auto}\ncalibration: {dir: images}\n")
    assert calibrated.pte_candidates == ("8da4w", "dynamic_int8", "static_int8", "none")


@pytest.mark.heavy
def test_bench_draws_the_candidates_size_accuracy_and_latency_beside_its_chart(first_fails, tiny_build):
    from vitq.bench.__main__ import write_candidates_chart

    _, paths = first_fails
    report = {"threads": 1, "recipe": {"name": "tiny"}, "host": {"cpu": "test cpu"},
              "variants": [{"id": "pte_8da4w", "variant": "pte_8da4w", "batches": {"1": {"p50_ms": 3.5}}},
                           {"id": "pte", "variant": "pte", "batches": {"1": {"p50_ms": 2.5}}}]}
    write_candidates_chart(report, paths)
    with Image.open(paths.root / "candidates.png") as image:
        image.load()
        assert image.format == "PNG" and image.width > 600
    write_candidates_chart(report, tiny_build)  # one strategy: no candidates, no chart
    assert not (tiny_build.root / "candidates.png").exists()


def test_the_build_cache_stores_and_hashes_the_calibration_set_as_a_folder(tmp_path):
    from vitq.layout import CALIBRATION
    from vitq.orchestration.cache import input_digest, output_files

    paths = ArtifactPaths.for_recipe(tmp_path, "tiny")
    calibration_images(paths.calibration_list.parent)
    paths.calibration_list.write_text("".join(f"cal{i}.png\n" for i in range(6)))
    stored = output_files({CALIBRATION: paths.calibration_list}, paths.root)
    assert sorted(path for _, path, _ in stored) == sorted(
        ["calibration/images.txt", *(f"calibration/cal{i}.png" for i in range(6))])
    before = input_digest(CALIBRATION, paths.calibration_list)
    (paths.calibration_list.parent / "cal3.png").write_bytes(b"another image")
    assert input_digest(CALIBRATION, paths.calibration_list) != before  # an image, not only the listing, counts


# The tiny ViT, wider and deeper: with random weights its int4 weights put 8da4w's logits a quarter of the largest
# logit away from fp32's (0.25 on four noise images, where the .pte stage allows 0.1).
WIDER = TINY_TIMM.replace("embed_dim: 32, depth: 1", "embed_dim: 64, depth: 2")


@pytest.mark.heavy
def test_a_candidate_the_pte_stage_refuses_is_a_failed_candidate_and_the_next_one_ships(tmp_path):
    """An 8da4w program that lowers and runs, but off fp32, on random weights that no gate can judge: the .pte stage
    refuses it (as it refuses a program ExecuTorch's runtime cannot run). Among candidates that is one failed
    candidate with its reason, not a failed build (alone it is still the build's one-line error, as test_stages
    shows)."""
    make_images(tmp_path / "images")
    recipe = load_recipe(write_recipe(tmp_path, "wider", WIDER.format(
        extra="mobile: {enabled: false}\nexecutorch: {quantize: [8da4w, none]}\n")))
    paths = build(recipe, tmp_path / "artifacts")
    manifest = json.loads(paths.manifest.read_text())
    failed, fallback = manifest["candidates"]
    assert (failed["strategy"], fallback["strategy"]) == ("8da4w", "none")
    assert not failed["passed"] and not failed["shipped"] and failed["bytes"] == 0 and failed["top1"] is None
    assert "pte_8da4w.lowered = 0, needs >= 1" in failed["why"] and "the 8da4w program 8da4w.pte is off" in failed["why"]
    assert fallback["shipped"] and "pte_8da4w did not" in fallback["why"] and manifest["passed"] is True
    assert [a["name"] for a in manifest["artifacts"] if a["format"] == "executorch"] == ["pte_none"]
    assert "pte_8da4w" not in manifest["accuracy"] and manifest["accuracy"]["pte_none"]["n"] == 6
    assert "| 8da4w | `8da4w.pte` | 0 B | 0.000x | not built | not built | not built |" in paths.report.read_text()
    assert verify(paths.manifest) == []
    with pytest.raises(InputError, match=r"8da4w\.pte: holds no program: this ExecuTorch candidate failed \(it did not lower"):
        predict(paths.root / "8da4w.pte", [paths.samples_dir / "img1.png"])
    from vitq.bench.__main__ import write_candidates_chart
    from vitq.bench.measure import run_bench

    report = run_bench(recipe, paths, repeats=1, warmup=0, batch_sizes=(1,), progress=False)
    measured = {v["id"]: v for v in report["variants"]}
    assert "pte_8da4w" not in measured and measured["pte_none"]["error"] is None  # nothing to time in an empty file
    write_candidates_chart(report, paths)  # the failed candidate: a bar that says so, no point
    with Image.open(paths.root / "candidates.png") as image:
        assert image.format == "PNG"
