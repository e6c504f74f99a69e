"""The vitq command: exit codes and one-line errors, as a user (or CI) sees them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vitq.cli import main


def test_verify_json_says_ok_and_exits_zero(tiny_build, capsys):
    assert main(["verify", str(tiny_build.manifest), "--json", "--no-rerun"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True


def test_verify_of_a_missing_manifest_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["verify", str(tmp_path / "manifest.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("vitq: ") and "manifest not found" in err


def test_report_shows_the_report_and_each_stages_cost(tiny_build, capsys):
    assert main(["report", str(tiny_build.root)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# tiny 0.0.0: PASSED") and "| stage | work s | start-up s | peak RSS MB |" in out and "| int8 |" in out


@pytest.mark.e2e
def test_the_installed_command_predicts_with_names(tiny_build):
    proc = subprocess.run([sys.executable, "-m", "vitq.cli", "predict", str(tiny_build.file("lite")),
                           str(tiny_build.samples_dir / "img0.jpg")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].endswith("img0.jpg:") and len(lines) == 6 and lines[1].strip().startswith("1. class ")


def test_vitq_new_hints_at_vitq_recipes_only_for_a_recipe_outside_the_projects_recipes(tmp_path, monkeypatch):
    from vitq.cli import recipes_hint

    project = tmp_path / "checkout"
    (project / "recipes").mkdir(parents=True)
    (tmp_path / "link").symlink_to(project, target_is_directory=True)
    monkeypatch.chdir(project)
    assert recipes_hint(Path("recipes/mine.yaml"), project) == ""  # as `vitq new x -o recipes/mine.yaml` gives it
    assert recipes_hint(tmp_path / "link" / "recipes" / "mine.yaml", project) == ""
    assert recipes_hint(Path("mine.yaml"), project) == f" (VITQ_RECIPES={project})"
    assert recipes_hint(tmp_path / "elsewhere" / "mine.yaml", project) == f" (VITQ_RECIPES={tmp_path / 'elsewhere'})"


def _subcommands(parser, prefix=()):
    """(name words, parser) of every command that takes arguments, nested ones (cache status) included."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _subcommands(sub, (*prefix, name))
            return
    yield " ".join(prefix), parser


def test_every_commands_help_says_what_it_does_and_shows_an_example_that_parses(capsys):
    from vitq.cli import EXAMPLES, build_parser

    commands = dict(_subcommands(build_parser()))
    assert set(commands) == set(EXAMPLES)
    for name, parser in commands.items():
        text = parser.format_help()
        assert len(parser.description.split("\n\n")[0]) > 20 and "example:\n  vitq " in text.replace("VITQ_CACHE=s3://bucket/vitq-cache ", ""), name
        example = [w for w in EXAMPLES[name].split() if "=" not in w or w.startswith("-")]
        assert example[0] == "vitq"
        args = build_parser().parse_args(example[1:])  # the example is a valid command line
        assert args.command == name.split()[0]
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0 and "Vision Transformers for phones" in capsys.readouterr().out
