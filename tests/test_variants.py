"""The variant table: one row per variant, and everything else derived from it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from vitq.recipe import load_recipe
from vitq.variants import (
    BY_ID,
    MOBILE,
    REFERENCE,
    VARIANTS,
    for_file,
    loaded_from,
    mobile_variant,
    parent_of,
    pte_candidates,
    shipped,
    variants_for,
)

from conftest import REPO, write_recipe
from helpers_models import TINY_TIMM


def recipe(tmp_path, extra=""):
    return load_recipe(write_recipe(tmp_path, "v", TINY_TIMM.format(extra=extra)))


def test_ids_and_files_are_unique_and_parents_come_first():
    ids = [v.id for v in VARIANTS]
    files = [v.file for v in VARIANTS if v.file]
    assert len(set(ids)) == len(ids) and len(set(files)) == len(files)
    for position, v in enumerate(VARIANTS):
        assert all(p in ids[:position] for p in v.parents), v.id
    assert VARIANTS[0].id == REFERENCE and not VARIANTS[0].parents
    assert BY_ID[MOBILE].shipped and BY_ID[MOBILE].file.endswith(".ptl")


def test_every_runtime_has_a_loader():
    from vitq.model.runtimes import LOADERS

    assert {v.runtime for v in VARIANTS} <= set(LOADERS)


def test_every_shipped_variant_is_written_by_the_stage_of_the_same_name():
    from vitq.orchestration.pipeline import stage_named

    for v in VARIANTS:
        if v.file:
            module = stage_named(v.id).module  # the ExecuTorch candidates share one module
            assert module == ("vitq.stages.pte" if v.strategy else f"vitq.stages.{v.id}")
            assert (REPO / "vitq" / "stages" / f"{module.rsplit('.', 1)[1]}.py").is_file()


def test_lite_is_made_from_optimized_only_when_the_recipe_optimizes(tmp_path):
    assert parent_of("lite", recipe(tmp_path / "a")) == "optimized"
    plain = recipe(tmp_path / "b", "mobile: {optimize: false}\n")
    assert parent_of("lite", plain) == "int8"
    assert "optimized" not in [v.id for v in variants_for(plain)]
    assert [v.id for v in shipped(plain)] == ["fp32", "int8", "lite", "onnx_fp32", "onnx_int8", "pte"]


def test_the_executorch_program_is_switched_and_quantized_by_its_recipe_section(tmp_path):
    assert [v.id for v in variants_for(recipe(tmp_path / "a")) if v.strategy] == ["pte"]
    assert BY_ID["pte"].is_quantized(recipe(tmp_path / "a"))
    float_only = recipe(tmp_path / "b", "executorch: {quantize: none}\n")
    assert [v.id for v in variants_for(float_only) if v.strategy] == ["pte_none"]
    assert not BY_ID["pte_none"].is_quantized(float_only)
    off = recipe(tmp_path / "c", "executorch: {enabled: false}\n")
    assert not [v for v in variants_for(off) if v.strategy] and BY_ID["int8"].is_quantized(off)


def test_each_candidate_is_a_variant_with_its_own_file_in_the_recipes_order(tmp_path):
    listed = recipe(tmp_path / "a", "executorch: {quantize: [8da4w, none, dynamic_int8]}\n")
    assert [v.id for v in pte_candidates(listed)] == ["pte_8da4w", "pte_none", "pte"]
    assert len({v.file for v in pte_candidates(listed)}) == 3
    assert [v.id for v in pte_candidates(recipe(tmp_path / "b", "executorch: {quantize: auto}\n"))] == [
        "pte_8da4w", "pte", "pte_none"]  # static_int8 only where calibration images are declared
    assert mobile_variant(["fp32", "onnx_int8", "pte_8da4w"]) == "pte_8da4w"


def test_in_memory_variants_load_from_the_fp32_weights():
    assert loaded_from("int8_eager") == loaded_from("fp32_script") == "fp32"
    assert loaded_from("lite") == "lite"
    assert for_file("int8.ptl").id == "lite" and for_file("model.bin") is None


def test_no_other_module_spells_out_the_variant_list():
    """The table is the only list: no module names three or more variant files or ids in one literal."""
    names = [v.file for v in VARIANTS if v.file]
    offenders = []
    for path in (REPO / "vitq").rglob("*.py"):
        if path.name == "variants.py":
            continue
        text = path.read_text()
        for line in text.splitlines():
            if sum(f'"{name}"' in line for name in names) >= 2:
                offenders.append(f"{path.relative_to(REPO)}: {line.strip()}")
    assert offenders == []


def test_stage_modules_are_imported_only_by_the_runner():
    proc = subprocess.run(["grep", "-rln", "vitq.stages", "vitq", "--include=*.py"], cwd=REPO,
                          capture_output=True, text=True)
    importers = {Path(p).as_posix() for p in proc.stdout.split()} - {"vitq/stages/__init__.py"}
    assert importers <= {"vitq/orchestration/runner.py", "vitq/orchestration/pipeline.py"}, importers  # pipeline names them, runner imports
    code = "import sys, vitq.orchestration.runner; sys.exit(any(m.startswith('vitq.stages.') for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0
