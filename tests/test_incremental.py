"""doit reruns exactly what an edit or a deletion invalidates, read from doit's own output."""

from __future__ import annotations

import re
import time

from conftest import quick_digits, run_doit, tasks_ran, tasks_skipped

CHAIN = {"samples:quick", "fp32:quick", "int8:quick", "optimized:quick", "lite:quick"}


def test_edits_and_deletions_rebuild_only_what_depends_on_them(tmp_path):
    recipes, root = tmp_path / "recipes", tmp_path / "artifacts"
    recipe = quick_digits(recipes)
    first = run_doit("build:quick", recipes=recipes, artifacts=root)
    assert CHAIN <= tasks_ran(first)
    out = root / "quick"
    for name in ("fp32.safetensors", "int8.pt", "int8.optimized.pt", "int8.ptl", "samples/labels.csv"):
        assert (out / name).is_file()

    started = time.perf_counter()
    again = run_doit("build:quick", recipes=recipes, artifacts=root)
    print(f"no-op rebuild took {time.perf_counter() - started:.2f}s")
    assert tasks_ran(again) <= {"build:quick"} and CHAIN <= tasks_skipped(again)

    fp32_mtime = (out / "fp32.safetensors").stat().st_mtime_ns
    recipe.write_text(recipe.read_text() + "quantize: {engine: x86, dtype: float16}\n")
    edited = run_doit("build:quick", recipes=recipes, artifacts=root)
    assert {"int8:quick", "optimized:quick", "lite:quick"} <= tasks_ran(edited)
    assert not {"samples:quick", "fp32:quick"} & tasks_ran(edited)
    assert (out / "fp32.safetensors").stat().st_mtime_ns == fp32_mtime

    (out / "int8.ptl").unlink()
    relite = run_doit("build:quick", recipes=recipes, artifacts=root)
    assert tasks_ran(relite) - {"build:quick"} == {"lite:quick"}
    assert (out / "int8.ptl").is_file()

    # training edits retrain, but the held-out split (samples) only depends on dataset/holdout/seed
    recipe.write_text(recipe.read_text().replace("epochs: 2", "epochs: 1"))
    retrained = run_doit("build:quick", recipes=recipes, artifacts=root)
    assert "fp32:quick" in tasks_ran(retrained) and "samples:quick" not in tasks_ran(retrained)

    run_doit("clean", "build:quick", recipes=recipes, artifacts=root)
    assert not (out / "int8.ptl").exists() and not (out / "fp32.safetensors").exists()


def test_doit_list_shows_stage_groups_and_recipes(tmp_path):
    proc = run_doit("list", "--all", artifacts=tmp_path)
    names = set(re.findall(r"^(\S+)", proc.stdout, re.M))
    assert {"build", "build:digits", "fp32:digits", "int8:digits", "optimized:digits", "lite:digits"} <= names


def test_a_broken_recipe_fails_its_build_with_one_line_and_leaves_others_alone(tmp_path):
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "broken.yaml").write_text("model: {source: timm\n")
    proc = run_doit("build:broken", recipes=recipes, artifacts=tmp_path / "a", check=False)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stdout + proc.stderr
    assert re.search(r"broken.yaml: line \d+, column \d+: YAML syntax error", proc.stdout + proc.stderr)
    listing = run_doit("list", recipes=recipes, artifacts=tmp_path / "a")
    assert "build" in listing.stdout
