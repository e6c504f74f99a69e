"""Recipe parsing: the shipped recipes load, and every mistake is one RecipeError naming file and field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DIGITS, REPO, write_recipe
from vitq.errors import RecipeError
from vitq.recipe import discover, load_recipe

MINIMAL = """\
model: {source: timm, name: deit_tiny_patch16_224, kwargs: {num_classes: 10}}
weights: {random: {seed: 1}}
preprocess: {resize: 256, crop: 224, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5]}
samples: {dir: images, labels: images/labels.csv}
"""


def test_every_shipped_recipe_loads():
    found = discover()
    assert "digits" in found
    for path in found.values():
        assert load_recipe(path).name == path.stem


def test_digits_recipe_trains_and_samples_its_held_out_split():
    recipe = load_recipe(DIGITS)
    assert recipe.weights.kind == "train"
    assert recipe.samples.builtin == "held_out"
    assert (recipe.quantize.dtype, recipe.quantize.engine, recipe.quantize.modules) == ("qint8", "qnnpack", ["Linear"])


def test_defaults_fill_in_what_a_minimal_recipe_leaves_out(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path, "mini", MINIMAL))
    assert recipe.export.method == "script" and recipe.mobile.optimize
    assert recipe.checks.onnx_atol == 1e-4
    assert recipe.preprocess.interpolation == "bicubic"


def test_relative_paths_resolve_against_the_recipe_file(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path / "sub", "mini", MINIMAL))
    assert Path(recipe.samples.dir) == tmp_path / "sub" / "images"
    assert recipe.resolved()["samples"]["dir"] == "images"


def test_weights_shorthands(tmp_path):
    hub = load_recipe(write_recipe(tmp_path, "a", MINIMAL.replace("{random: {seed: 1}}", "hub")))
    assert hub.weights.kind == "hub"
    f = load_recipe(write_recipe(tmp_path, "b", MINIMAL.replace("{random: {seed: 1}}", "{file: w.safetensors}")))
    assert f.weights.kind == "file" and Path(f.weights.file) == tmp_path / "w.safetensors"
    r = load_recipe(write_recipe(tmp_path, "c", MINIMAL.replace("{random: {seed: 1}}", "{random: }")))
    assert r.weights.random.seed == 0


def test_extends_merges_mappings_key_by_key(tmp_path):
    write_recipe(tmp_path, "base", MINIMAL)
    child = load_recipe(write_recipe(tmp_path, "child", "extends: base.yaml\nquantize: {engine: x86}\npreprocess: {crop: 200}\n"))
    assert child.quantize.engine == "x86" and child.quantize.dtype == "qint8"
    assert (child.preprocess.resize, child.preprocess.crop) == (256, 200)
    assert child.name == "child"


def test_extends_switching_weight_source_replaces_the_section(tmp_path):
    write_recipe(tmp_path, "base", MINIMAL.replace("{random: {seed: 1}}", "{file: w.safetensors}"))
    child = load_recipe(write_recipe(tmp_path, "child", "extends: base.yaml\nweights: {random: {seed: 3}}\n"))
    assert child.weights.kind == "random" and child.weights.random.seed == 3


def test_parent_paths_stay_relative_to_the_parent(tmp_path):
    write_recipe(tmp_path / "base", "base", MINIMAL)
    child = load_recipe(write_recipe(tmp_path / "other", "child", "extends: ../base/base.yaml\n"))
    assert Path(child.samples.dir) == tmp_path / "base" / "images"


def test_recipes_come_from_vitq_recipes_folders(tmp_path, monkeypatch):
    write_recipe(tmp_path, "mine", MINIMAL)
    write_recipe(tmp_path, "_partial", "quantize: {engine: x86}\n")
    monkeypatch.setenv("VITQ_RECIPES", str(tmp_path))
    found = discover()
    assert found["mine"] == tmp_path / "mine.yaml" and "digits" in found and "_partial" not in found


def test_a_recipe_name_used_twice_is_an_error(tmp_path, monkeypatch):
    write_recipe(tmp_path, "digits", MINIMAL)
    monkeypatch.setenv("VITQ_RECIPES", str(tmp_path))
    with pytest.raises(RecipeError, match="digits.yaml: recipe name 'digits' is also used by"):
        discover()


BAD = [
    ("yaml syntax", "model: [unclosed\n", None, "line 2, column 1: YAML syntax error"),
    ("empty", "", None, "recipe is empty"),
    ("not a mapping", "- a\n- b\n", None, "expected a mapping of sections, got list"),
    ("unknown key", MINIMAL + "qunatize: {dtype: qint8}\n", "qunatize", "unknown key; did you mean 'quantize'?"),
    ("unknown nested key", MINIMAL + "quantize: {dtpye: qint8}\n", "quantize.dtpye", "did you mean 'dtype'?"),
    ("wrong type", MINIMAL.replace("resize: 256", "resize: '256'"), "preprocess.resize", "valid integer"),
    ("missing field", MINIMAL.replace("weights: {random: {seed: 1}}\n", ""), "weights", "missing required field"),
    ("missing nested", MINIMAL.replace("crop: 224, ", ""), "preprocess.crop", "missing required field"),
    ("weight source", MINIMAL.replace("{random: {seed: 1}}", "url"), "weights", "expected hub, {file: path}"),
    ("weight source key", MINIMAL.replace("{random: {seed: 1}}", "{http: x}"), "weights.http", "unknown key"),
    ("two weight sources", MINIMAL.replace("{random: {seed: 1}}", "{random: {}, file: a}"), "weights", "exactly one"),
    ("mean length", MINIMAL.replace("mean: [0.5, 0.5, 0.5]", "mean: [0.5]"), "preprocess.mean", "at least 3"),
    ("std length", MINIMAL.replace("std: [0.5, 0.5, 0.5]", "std: [1, 1, 1, 1]"), "preprocess.std", "at most 3"),
    ("std zero", MINIMAL.replace("std: [0.5, 0.5, 0.5]", "std: [0.5, 0.0, 0.5]"), "preprocess.std.1", "greater than 0"),
    ("size zero", MINIMAL.replace("resize: 256", "resize: 0"), "preprocess.resize", "greater than 0"),
    ("crop > resize", MINIMAL.replace("crop: 224", "crop: 300"), "preprocess", "crop (300) is larger than resize (256)"),
    ("dtype", MINIMAL + "quantize: {dtype: int3}\n", "quantize.dtype", "expected one of 'qint8' or 'float16', got 'int3'"),
    ("fp16 on qnnpack", MINIMAL + "quantize: {dtype: float16}\n", "quantize", "float16 needs engine x86 or fbgemm"),
    ("engine", MINIMAL + "quantize: {engine: tpu}\n", "quantize.engine", "'qnnpack', 'x86' or 'fbgemm'"),
    ("export method", MINIMAL + "export: {method: onnx}\n", "export.method", "'script' or 'trace'"),
    ("blocklist", MINIMAL + "mobile: {blocklist: [NOPE]}\n", "mobile.blocklist.0", "expected one of"),
    ("samples", MINIMAL.replace("{dir: images, labels: images/labels.csv}", "{dir: images}"), "samples", "dir: folder, labels: file"),
    ("held_out needs training", MINIMAL.replace("{dir: images, labels: images/labels.csv}", "held_out"), None, "needs weights: {train"),
    ("name is reserved", MINIMAL + "name: other\n", "name", "is set from the file name"),
    ("extends missing", "extends: nowhere.yaml\n" + MINIMAL, "extends", "parent recipe not found: nowhere.yaml"),
]


@pytest.mark.parametrize("text, field, message", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_recipe_is_one_line_naming_file_and_field(tmp_path, text, field, message):
    path = write_recipe(tmp_path, "bad", text)
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    line = str(info.value)
    assert "\n" not in line
    assert line.startswith(str(path))
    if field:
        assert f": {field}: " in line
    assert message in line


def test_extends_cycle_is_named(tmp_path):
    write_recipe(tmp_path, "a", "extends: b.yaml\n")
    write_recipe(tmp_path, "b", "extends: a.yaml\n")
    with pytest.raises(RecipeError, match=r"b.yaml: extends: cycle: a.yaml -> b.yaml -> a.yaml"):
        load_recipe(tmp_path / "a.yaml")


def test_a_name_that_is_not_a_plain_word_is_refused(tmp_path):
    with pytest.raises(RecipeError, match="name: recipe name"):
        load_recipe(write_recipe(tmp_path, "..x", MINIMAL))


def test_recipe_module_does_not_import_torch():
    code = "import sys, dodo, vitq.recipe, vitq.tasks; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


def test_yaml_is_never_executed(tmp_path):
    evil = write_recipe(tmp_path, "evil", "!!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(RecipeError, match="YAML syntax error"):
        load_recipe(evil)
