"""Recipe parsing: the shipped recipes load, and every mistake is one RecipeError naming file and field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from vitq.errors import RecipeError, display_path, one_line
from vitq.orchestration.discovery import discover
from vitq.recipe import load_recipe

from conftest import DIGITS, REPO, write_recipe
from helpers_models import TINY_TIMM

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
    assert recipe.export.method == "auto" and recipe.mobile.optimize
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
    ("export method", MINIMAL + "export: {method: onnx}\n", "export.method", "'auto', 'script' or 'trace'"),
    ("blocklist", MINIMAL + "mobile: {blocklist: [NOPE]}\n", "mobile.blocklist.0", "expected one of"),
    ("executorch quantize", MINIMAL + "executorch: {quantize: int4}\n", "executorch.quantize",
     "unknown strategy 'int4'; expected one of none, dynamic_int8, 8da4w, static_int8 or auto, or a list of them"),
    ("executorch key", MINIMAL + "executorch: {enable: false}\n", "executorch.enable", "did you mean 'enabled'?"),
    ("executorch type", MINIMAL + "executorch: {enabled: sometimes}\n", "executorch.enabled", "valid boolean"),
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


def test_every_problem_of_a_recipe_is_reported_at_once_one_line_each_in_schema_order(tmp_path):
    text = MINIMAL.replace("crop: 224, ", "") + "qunatize: {dtype: qint8}\nquantize: {dtype: int3}\n"
    path = write_recipe(tmp_path, "bad", text)
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert str(info.value).splitlines() == [
        f"{path}: 3 problems",
        f"{path}: preprocess.crop: missing required field",
        f"{path}: quantize.dtype: expected one of 'qint8' or 'float16', got 'int3'",
        f"{path}: qunatize: unknown key; did you mean 'quantize'?",
    ]
    assert [field for field, _ in info.value.problems] == ["preprocess.crop", "quantize.dtype", "qunatize"]


def test_reserved_keys_are_listed_with_the_schema_problems(tmp_path):
    path = write_recipe(tmp_path, "bad", MINIMAL.replace("resize: 256", "resize: 0") + "name: x\nsource: y\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert str(info.value).splitlines()[1:] == [
        f"{path}: name: is set from the file name; remove it",
        f"{path}: source: is set from the file name; remove it",
        f"{path}: preprocess.resize: Input should be greater than 0, got 0",
    ]


def test_a_value_is_one_problem_even_where_pydantic_tags_it(tmp_path):
    path = write_recipe(tmp_path, "bad", MINIMAL.replace("{random: {seed: 1}}", "{hub: 2, file: 3}")
                        .replace("num_classes: 10", "1: 10"))
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert info.value.problems == [
        ("model.kwargs.1", "keys must be strings, got 1"),
        ("weights.hub", "expected one of True, got 2"),
        ("weights.file", "Input should be a valid string, got 3"),
    ]


def test_a_union_reported_once_per_member_is_one_problem():
    from pydantic import BaseModel, ValidationError

    from vitq.recipe import _problems

    class Union(BaseModel):  # pydantic tags each member's error: ('hub', 'literal[True]'), ('hub', 'int')
        hub: Literal[True] | int | None = None

    with pytest.raises(ValidationError) as info:
        Union.model_validate({"hub": "x"})
    assert len(info.value.errors()) == 2
    assert _problems(info.value) == [("hub", "expected one of True, got 'x'")]


def test_recipe_error_many_with_one_problem_is_the_plain_error(tmp_path):
    one = RecipeError.many(tmp_path / "r.yaml", [("quantize", "bad")])
    assert str(one) == str(RecipeError(tmp_path / "r.yaml", "quantize", "bad"))
    assert (one.field, one.problem, one.problems) == ("quantize", "bad", [("quantize", "bad")])


def test_extends_cycle_is_named(tmp_path):
    write_recipe(tmp_path, "a", "extends: b.yaml\n")
    write_recipe(tmp_path, "b", "extends: a.yaml\n")
    with pytest.raises(RecipeError, match=r"b.yaml: extends: cycle: a.yaml -> b.yaml -> a.yaml"):
        load_recipe(tmp_path / "a.yaml")


def test_a_name_that_is_not_a_plain_word_is_refused(tmp_path):
    with pytest.raises(RecipeError, match="name: recipe name"):
        load_recipe(write_recipe(tmp_path, "..x", MINIMAL))


def test_recipe_module_does_not_import_torch():
    code = "import sys, dodo, vitq.recipe, vitq.orchestration.tasks; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


def test_yaml_is_never_executed(tmp_path):
    evil = write_recipe(tmp_path, "evil", "!!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(RecipeError, match="YAML syntax error"):
        load_recipe(evil)


# ---------------------------------------------------------------- property-based: whatever the YAML says

BASE = yaml.safe_load(TINY_TIMM.format(extra=""))
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 500) | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, prefix + (key,))


PATHS = [p for p in _paths(BASE) if p]


@st.composite
def mutated_recipes(draw):
    data = yaml.safe_load(yaml.safe_dump(BASE))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        parent = data
        for key in path[:-1]:
            if not isinstance(parent, dict) or key not in parent:
                break
            parent = parent[key]
        else:
            if isinstance(parent, dict):
                action = draw(st.sampled_from(["replace", "delete", "add"]))
                if action == "replace":
                    parent[path[-1]] = draw(JSONISH)
                elif action == "delete":
                    parent.pop(path[-1], None)
                else:
                    parent[draw(st.text(min_size=1, max_size=10))] = draw(JSONISH)
    return data


def assert_recipe_or_well_formed_error(path: Path) -> None:
    """A Recipe, or a RecipeError that is one line per problem, each naming the file (and the field),
    after a '<file>: N problems' line when there are several."""
    try:
        load_recipe(path)
        return
    except RecipeError as exc:
        error = exc
    file = display_path(path)
    lines = str(error).split("\n")
    assert all(line.startswith(f"{file}: ") and line.isprintable() for line in lines), lines
    n = len(error.problems)
    if n == 1:
        assert len(lines) == 1
    else:
        assert lines[0] == f"{file}: {n} problems"
        assert len(lines) == n + 1
        fields = [field for field, _ in error.problems]
        assert len(set(fields)) == n, f"one line per field: {fields}"
        for line, (field, problem) in zip(lines[1:], error.problems, strict=True):
            assert problem
            assert line == one_line(f"{file}: {field}: {problem}" if field else f"{file}: {problem}")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=mutated_recipes())
@example(data={**BASE, "\n": None})  # found by hypothesis: a key that is a line break broke the one-line error
@example(data={**BASE, "\n": None, "threads": 0, "weights": {"hub": 2, "file": 3}})
@example(data={**BASE, "name": "x", "samples": "held_out"})  # a problem of the whole recipe names no field
def test_mutated_recipes_give_a_recipe_or_one_line_per_problem(tmp_path, data):
    path = tmp_path / "mutant.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    assert_recipe_or_well_formed_error(path)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_arbitrary_text_gives_a_recipe_or_one_line_per_problem(tmp_path, text):
    path = tmp_path / "noise.yaml"
    path.write_text(text)
    assert_recipe_or_well_formed_error(path)


def test_digits_recipe_survives_a_round_trip_through_yaml(tmp_path):
    import yaml

    data = yaml.safe_load(DIGITS.read_text())
    assert load_recipe(write_recipe(tmp_path, "copy", yaml.safe_dump(data))).weights.kind == "train"


def test_a_child_drops_a_parents_section_with_null_and_refusals_that_null_resolves_say_so(tmp_path):
    """digits trains and calibrates on its training split; a child on other weights inherits that calibration, and
    a child with static_int8 or a blocklist it inherits: each refusal names the `null` that resolves it."""
    write_recipe(tmp_path, "base", DIGITS.read_text().replace("blocklist: []", "blocklist: [REMOVE_DROPOUT]"))
    hub = "extends: base.yaml\nweights: {random: {seed: 0}}\nsamples: photos\n"
    with pytest.raises(RecipeError, match=r"calibration: \{split: train\} needs weights: \{train: \.\.\.\}; or give "
                       r"\{dir: folder\}; drop the parent's with `calibration: null`$"):
        load_recipe(write_recipe(tmp_path, "child", hub))
    assert load_recipe(write_recipe(tmp_path, "child2", hub + "calibration: null\n")).calibration is None

    static = "extends: base.yaml\nexecutorch: {quantize: static_int8}\n"
    write_recipe(tmp_path, "static", static)
    with pytest.raises(RecipeError, match=r"static_int8 needs calibration images: .*; drop the parent's with "
                       r"`executorch: \{quantize: null\}`$"):
        load_recipe(write_recipe(tmp_path, "child3", "extends: static.yaml\ncalibration: null\n"))
    dropped = load_recipe(write_recipe(tmp_path, "child4", "extends: static.yaml\ncalibration: null\n"
                                       "executorch: {quantize: null}\n"))
    assert dropped.pte_candidates == ("dynamic_int8",)

    with pytest.raises(RecipeError, match=r"mobile.blocklist: .*optimize: true; drop the parent's with "
                       r"`mobile: \{blocklist: null\}`$"):
        load_recipe(write_recipe(tmp_path, "child5", "extends: base.yaml\nmobile: {optimize: false}\n"))
    frozen = load_recipe(write_recipe(tmp_path, "child6", "extends: base.yaml\nmobile: {optimize: false, blocklist: null}\n"))
    assert frozen.mobile.blocklist == [] and not frozen.mobile.optimize
    assert load_recipe(write_recipe(tmp_path, "child7", "extends: base.yaml\nexecutorch: null\n")).executorch.quantize == "dynamic_int8"


def test_a_refusal_about_what_the_recipe_itself_sets_names_no_parent(tmp_path):
    text = DIGITS.read_text().replace("optimize: true", "optimize: false").replace("blocklist: []", "blocklist: [REMOVE_DROPOUT]")
    with pytest.raises(RecipeError) as caught:
        load_recipe(write_recipe(tmp_path, "own", text))
    assert "optimize: true" in str(caught.value) and "parent" not in str(caught.value)
