"""Recipes -> doit tasks: what each task depends on, and (e2e) doit rerunning exactly what an edit invalidates."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time

import pytest

from vitq.layout import ArtifactPaths
from vitq.orchestration.pipeline import stage_named
from vitq.orchestration.stage_process import user_error
from vitq.orchestration.tasks import recipe_tasks

from conftest import REPO, copy_checkout, quick_digits, run_doit, tasks_ran, tasks_skipped, write_recipe
from helpers_models import tiny_recipe


def tasks_by_name(recipe, root):
    return {f"{t['basename']}:{t['name']}": t for t in recipe_tasks(recipe, ArtifactPaths.for_recipe(root, recipe.name))}


def test_each_stage_task_depends_on_exactly_the_files_its_stage_reads_and_writes(tmp_path):
    recipe = tiny_recipe(tmp_path)
    paths = ArtifactPaths.for_recipe(tmp_path / "out", recipe.name)
    tasks = tasks_by_name(recipe, tmp_path / "out")
    for name in ("fp32", "samples", "int8", "optimized", "lite", "onnx_fp32", "onnx_int8", "eval", "manifest"):
        stage, task = stage_named(name), tasks[f"{name}:tiny"]
        assert task["file_dep"] == [str(p) for p in stage.inputs(recipe, paths).values()]
        assert task["targets"] == [str(p) for p in stage.outputs(recipe, paths).values()]
    assert tasks["build:tiny"]["task_dep"][0] == "fp32:tiny"


def test_a_recipe_without_optimize_has_no_optimized_task(tmp_path):
    tasks = tasks_by_name(tiny_recipe(tmp_path, extra="mobile: {optimize: false}\n"), tmp_path / "out")
    assert "optimized:tiny" not in tasks and "optimized:tiny" not in tasks["build:tiny"]["task_dep"]
    assert tasks["lite:tiny"]["file_dep"][0].endswith("int8.pt")


def test_bench_task_reads_every_variant_file_and_passes_only_the_flags_given(tmp_path):
    tasks = tasks_by_name(tiny_recipe(tmp_path), tmp_path / "out")
    bench = tasks["bench:tiny"]
    assert {p.rsplit("/", 1)[1] for p in bench["file_dep"]} >= {"fp32.safetensors", "int8.ptl", "int8.onnx", "labels.csv"}
    assert {p["name"]: p["default"] for p in bench["params"]} == {"repeats": None, "warmup": None}


def test_a_stage_error_of_several_problems_keeps_them_all():
    lines = ["Warning: something", "x.yaml: 2 problems", "x.yaml: a: bad", "x.yaml: b: bad"]
    assert user_error(lines) == "x.yaml: 2 problems\nx.yaml: a: bad\nx.yaml: b: bad"
    assert user_error(["noise", "x.yaml: model.name: unknown"]) == "x.yaml: model.name: unknown"


def test_loading_dodo_imports_neither_torch_nor_the_benchmark():
    code = "import sys, dodo, vitq.orchestration.tasks; sys.exit(bool({'torch', 'vitq.bench'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


# ---------------------------------------------------------------- end to end, through doit

CHAIN = {"samples:quick", "fp32:quick", "int8:quick", "optimized:quick", "lite:quick"}


@pytest.mark.e2e
def test_edits_of_the_recipe_of_vitq_code_and_of_files_rebuild_only_what_depends_on_them(tmp_path):
    repo = copy_checkout(tmp_path / "checkout")
    recipes, root = tmp_path / "recipes", tmp_path / "artifacts"
    recipe = quick_digits(recipes, holdout=0.05)

    def build():
        return run_doit("build:quick", recipes=recipes, artifacts=root, repo=repo)

    assert CHAIN <= tasks_ran(build())
    out = root / "quick"
    started = time.perf_counter()
    again = build()
    print(f"no-op rebuild took {time.perf_counter() - started:.2f}s")
    assert tasks_ran(again) <= {"build:quick"} and CHAIN <= tasks_skipped(again)

    with open(repo / "vitq" / "stages" / "optimized.py", "a") as fh:
        fh.write("# edited\n")
    # optimize_for_mobile wrote the same bytes, so nothing after it had to run again (doit hashes its inputs)
    assert tasks_ran(build()) - {"build:quick"} == {"optimized:quick"}

    with open(repo / "vitq" / "model" / "samples.py", "a") as fh:  # read by samples, lite, eval and the manifest
        fh.write("# edited\n")
    ran = tasks_ran(build())
    assert {"samples:quick", "lite:quick", "eval:quick", "manifest:quick"} <= ran
    assert not {"fp32:quick", "int8:quick", "onnx_fp32:quick"} & ran

    fp32_mtime = (out / "fp32.safetensors").stat().st_mtime_ns
    recipe.write_text(recipe.read_text() + "quantize: {engine: x86, dtype: float16}\nexport: {method: trace}\n")
    ran = tasks_ran(build())
    assert {"int8:quick", "optimized:quick", "lite:quick", "eval:quick"} <= ran
    assert not {"samples:quick", "fp32:quick", "onnx_fp32:quick"} & ran  # the ONNX export does not read them
    assert (out / "fp32.safetensors").stat().st_mtime_ns == fp32_mtime

    (out / "int8.ptl").unlink()
    assert tasks_ran(build()) - {"build:quick"} == {"lite:quick"}

    run_doit("clean", "build:quick", recipes=recipes, artifacts=root, repo=repo)
    assert not (out / "int8.ptl").exists() and not (out / "fp32.safetensors").exists()


@pytest.mark.e2e
def test_doit_list_shows_stage_groups_and_recipes(tmp_path):
    proc = run_doit("list", "--all", artifacts=tmp_path)
    names = set(re.findall(r"^(\S+)", proc.stdout, re.M))
    assert {"build", "build:digits", "fp32:digits", "int8:digits", "optimized:digits", "lite:digits"} <= names


@pytest.mark.e2e
def test_a_broken_recipe_fails_its_build_with_every_problem_and_leaves_others_alone(tmp_path):
    recipes = tmp_path / "recipes"
    write_recipe(recipes, "broken", "model: {source: timm\n")
    write_recipe(recipes, "three", "model: {source: timm, name: x}\nweights: {random: {}}\nqunatize: {}\n"
                 "preprocess: {resize: 8, crop: 8, mean: [0, 0, 0], std: [1, 1]}\nsamples: photos\n")
    proc = run_doit("build:broken", recipes=recipes, artifacts=tmp_path / "a", check=False)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stdout + proc.stderr
    assert re.search(r"broken.yaml: line \d+, column \d+: YAML syntax error", proc.stdout + proc.stderr)
    proc = run_doit("build:three", recipes=recipes, artifacts=tmp_path / "a", check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in output
    assert re.search(r"three.yaml: 2 problems\n.*three.yaml: preprocess.std: .*\n.*three.yaml: qunatize: unknown key",
                     output), output
    listing = run_doit("list", recipes=recipes, artifacts=tmp_path / "a")
    assert "build" in listing.stdout


@pytest.mark.e2e
def test_bad_input_fails_the_doit_build_with_one_line_and_leaves_artifacts_untouched(tiny_build, tmp_path):
    from vitq.fileio import sha256_file

    recipes, root = tmp_path / "recipes", tmp_path / "artifacts"
    shutil.copytree(tiny_build.root.parent.parent, recipes, ignore=shutil.ignore_patterns("artifacts"))
    shutil.copytree(tiny_build.root.parent, root)
    recipe = recipes / "tiny.yaml"
    recipe.write_text(recipe.read_text().replace("vit_tiny_patch16_224", "vit_tinny_patch16_224"))
    before = {p.name: sha256_file(p) for p in (root / "tiny").glob("*") if p.is_file() and p.suffix != ".jsonl"}
    proc = run_doit("build:tiny", recipes=recipes, artifacts=root, check=False)
    output = proc.stdout + proc.stderr
    message = "tiny.yaml: model.name: unknown timm model 'vit_tinny_patch16_224'; did you mean 'vit_tiny_patch16_224'?"
    assert proc.returncode != 0 and "Traceback" not in output
    assert len([line for line in output.splitlines() if message in line]) == 1, output
    after = {p.name: sha256_file(p) for p in (root / "tiny").glob("*") if p.is_file() and p.suffix != ".jsonl"}
    assert after == before
