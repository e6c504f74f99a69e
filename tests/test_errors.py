"""vitq.errors: what a user sees when something is wrong: one line naming the file (and the field), never a
traceback for their mistakes, a traceback for vitq's own bugs."""

from __future__ import annotations

from pathlib import Path

import pytest

from vitq.errors import (
    INTERRUPTED_EXIT,
    USER_ERROR,
    GateError,
    InputError,
    RecipeError,
    VitqError,
    display_path,
    first_line,
    one_line,
    run_command,
)


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_recipe_error_is_file_field_problem_on_one_line(in_tmp):
    error = RecipeError(in_tmp / "recipes" / "x.yaml", "quantize.dtype", "expected one of 'qint8' or 'float16'")
    assert str(error) == "recipes/x.yaml: quantize.dtype: expected one of 'qint8' or 'float16'"
    assert isinstance(error, VitqError)
    assert (error.path, error.field, error.problems) == (in_tmp / "recipes" / "x.yaml", "quantize.dtype",
                                                          [("quantize.dtype", "expected one of 'qint8' or 'float16'")])
    assert str(RecipeError(in_tmp / "x.yaml", None, "YAML syntax error")) == "x.yaml: YAML syntax error"


def test_a_recipe_error_with_line_breaks_in_a_key_or_problem_stays_one_line(in_tmp):
    error = RecipeError("x.yaml", "a\nb", "unknown key\r\n(see docs)")
    assert str(error) == "x.yaml: a\\nb: unknown key\\r\\n(see docs)"
    assert len(str(error).splitlines()) == 1


def test_many_problems_are_a_count_line_then_one_line_each(in_tmp):
    problems = [("preprocess.crop", "missing required field"), (None, "not a mapping"), ("bad\tkey", "unknown key")]
    error = RecipeError.many(in_tmp / "x.yaml", problems)
    assert str(error).split("\n") == [
        "x.yaml: 3 problems",
        "x.yaml: preprocess.crop: missing required field",
        "x.yaml: not a mapping",
        "x.yaml: bad\\tkey: unknown key",
    ]
    assert error.problems == problems and error.field is None and error.problem == "3 problems"


def test_an_input_error_names_the_file_on_one_line(in_tmp):
    error = InputError(in_tmp / "images" / "a.png", "not a readable image\n(truncated)")
    assert str(error) == "images/a.png: not a readable image\\n(truncated)"
    assert error.path == in_tmp / "images" / "a.png"


@pytest.mark.parametrize("text, expected", [
    ("plain text: 'quoted' [1, 2]", "plain text: 'quoted' [1, 2]"),
    ("two\nlines", "two\\nlines"),
    ("tab\there, cr\rthere", "tab\\there, cr\\rthere"),
    ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),  # a terminal escape is shown, not obeyed
    ("nul\x00", "nul\\x00"),
    ("line\u2028separator", "line\\u2028separator"),  # str.splitlines() would split here
    ("café → 日本", "café → 日本"),  # printable non-ASCII is kept as it is
])
def test_one_line_escapes_only_what_is_not_printable(text, expected):
    assert one_line(text) == expected
    assert one_line(text).isprintable() and len(one_line(text).splitlines()) == 1


def test_display_path_is_relative_under_the_working_directory_and_absolute_elsewhere(in_tmp):
    assert display_path(in_tmp / "recipes" / "x.yaml") == "recipes/x.yaml"
    assert display_path("recipes/../recipes/x.yaml") == "recipes/x.yaml"
    assert display_path(str(in_tmp / "x.yaml")) == "x.yaml"
    outside = in_tmp.parent / "elsewhere" / "x.yaml"
    assert display_path(outside) == str(outside)


def test_first_line_keeps_the_first_line_of_a_library_message_or_its_class():
    assert first_line(RuntimeError("\n  Dynamic control flow is not supported\nlong explanation\n")) == (
        "Dynamic control flow is not supported")
    assert first_line(RuntimeError("Failed to decompose. \x1b[96mThis is step 2/3\x1b[0m of exporting")) == (
        "Failed to decompose. This is step 2/3 of exporting")
    assert first_line(ValueError("")) == "ValueError"
    assert first_line(KeyError()) == "KeyError"
    assert first_line(KeyError("fp32")) == "'fp32'"


def test_run_command_returns_what_the_body_returns():
    assert run_command(lambda: 0) == 0
    assert run_command(lambda: 1) == 1


@pytest.mark.parametrize("error", [
    RecipeError("x.yaml", "model.name", "unknown timm model 'x'"),
    InputError("a.png", "image file not found"),
    GateError("check failed: min_agreement"),
    VitqError("no complete build"),
])
def test_a_user_error_is_its_text_on_stderr_and_exit_2(error, capsys):
    def body():
        raise error

    assert run_command(body, prefix="vitq: ") == USER_ERROR == 2
    out, err = capsys.readouterr()
    assert out == "" and err == f"vitq: {error}\n"


def test_a_many_problem_error_prints_every_line(capsys, tmp_path):
    def body():
        raise RecipeError.many(tmp_path / "x.yaml", [("a", "bad"), ("b", "worse")])

    assert run_command(body) == USER_ERROR
    assert len(capsys.readouterr().err.splitlines()) == 3


def test_ctrl_c_is_one_line_and_the_shells_exit_code(capsys):
    def body():
        raise KeyboardInterrupt

    assert run_command(body, prefix="digits:fp32 ") == INTERRUPTED_EXIT == 130
    assert capsys.readouterr().err == "digits:fp32 interrupted\n"


@pytest.mark.parametrize("bug", [ZeroDivisionError("division by zero"), KeyError("x"), SystemExit(3)])
def test_anything_else_is_a_bug_and_propagates_with_its_traceback(bug, capsys):
    def body():
        raise bug

    with pytest.raises(type(bug)):
        run_command(body)
    assert capsys.readouterr().err == ""


def test_an_unprintable_path_is_escaped_too(in_tmp):
    error = RecipeError(Path("odd\nname.yaml"), "x", "bad")
    assert str(error) == "odd\\nname.yaml: x: bad"
