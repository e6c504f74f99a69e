"""Bad recipes and inputs: one line naming the file and field or path, non-zero exit, nothing touched."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import DIGITS, copy_build, run_doit, write_recipe
from helpers_models import TINY_TIMM
from vitq.errors import RecipeError
from vitq.fileio import sha256_file
from vitq.recipe import load_recipe

STAGE_ERRORS = [
    ("unknown timm model", lambda r: r.replace("vit_tiny_patch16_224", "vit_tinny_patch16_224"), None,
     "tiny.yaml: model.name: unknown timm model 'vit_tinny_patch16_224'; did you mean 'vit_tiny_patch16_224'?"),
    ("missing weight file", lambda r: r.replace("{random: {seed: 7}}", "{file: gone.safetensors}"), None,
     "tiny.yaml: weights.file: file not found: "),
    ("corrupt weight file", lambda r: r.replace("{random: {seed: 7}}", "{file: junk.safetensors}"),
     lambda d: (d / "junk.safetensors").write_bytes(b"\x00" * 100), "tiny.yaml: weights.file: cannot read junk.safetensors"),
    ("unreadable .pth", lambda r: r.replace("{random: {seed: 7}}", "{file: junk.pth}"),
     lambda d: (d / "junk.pth").write_text("hello"), "tiny.yaml: weights.file: cannot read junk.pth"),
    ("sample folder missing", lambda r: r.replace("{dir: images,", "{dir: nowhere,"), None,
     "tiny.yaml: samples.dir: folder not found: "),
    ("labels name a missing file", None, lambda d: _append_label(d, "ghost.png,1"),
     "labels.csv: ghost.png: image file not found in "),
    ("class out of range", None, lambda d: _append_label(d, "img1.png,7"), "labels.csv: img1.png: class (7,) out of range 0..4"),
    ("labels not a number", None, lambda d: _append_label(d, "img1.png,cat"), "labels.csv: line 8: class must be an integer index"),
    ("non-image file", None, lambda d: ((d / "images" / "notes.png").write_text("hi"), _append_label(d, "notes.png,1")),
     "notes.png: not a readable image"),
    ("empty sample folder", lambda r: r.replace("{dir: images, labels: images/labels.csv}", "{dir: empty, labels: empty/labels.csv}"),
     lambda d: (d / "empty").mkdir(), "empty/labels.csv: labels file not found"),
]


def _append_label(folder, row):
    labels = folder / "images" / "labels.csv"
    labels.write_text(labels.read_text() + row + "\n")


@pytest.mark.parametrize("edit_recipe, prepare, message", [e[1:] for e in STAGE_ERRORS], ids=[e[0] for e in STAGE_ERRORS])
def test_bad_input_fails_the_build_with_one_line_and_leaves_artifacts_untouched(built_tiny, tmp_path, edit_recipe, prepare, message):
    recipes, root = copy_build(built_tiny, tmp_path)
    recipe = recipes / "tiny.yaml"
    if edit_recipe:
        recipe.write_text(edit_recipe(recipe.read_text()))
    if prepare:
        prepare(recipes)
    before = {p.name: sha256_file(p) for p in (root / "tiny").glob("*") if p.is_file() and p.suffix != ".jsonl"}

    proc = run_doit("build:tiny", recipes=recipes, artifacts=root, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Traceback" not in output
    problem_lines = [line for line in output.splitlines() if message in line]
    assert len(problem_lines) == 1, output
    after = {p.name: sha256_file(p) for p in (root / "tiny").glob("*") if p.is_file() and p.suffix != ".jsonl"}
    assert after == before


# ---------------------------------------------------------------- property-based: mutated recipes

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


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=mutated_recipes())
@example(data={**BASE, "\n": None})  # found by hypothesis: a key that is a line break broke the one-line error
def test_mutated_recipes_give_a_recipe_or_a_one_line_recipe_error(tmp_path, data):
    path = tmp_path / "mutant.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    try:
        load_recipe(path)
    except RecipeError as exc:
        text = str(exc)
        assert text.startswith(str(path)) and "\n" not in text


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_arbitrary_text_gives_a_recipe_or_a_one_line_recipe_error(tmp_path, text):
    path = tmp_path / "noise.yaml"
    path.write_text(text)
    try:
        load_recipe(path)
    except RecipeError as exc:
        assert "\n" not in str(exc)


def test_digits_recipe_survives_a_round_trip_through_yaml(tmp_path):
    data = yaml.safe_load(DIGITS.read_text())
    assert load_recipe(write_recipe(tmp_path, "copy", yaml.safe_dump(data))).weights.kind == "train"
