"""Shared helpers: run doit as a user would (a subprocess), on private recipe and artifact folders."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DIGITS = REPO / "recipes" / "digits.yaml"


def run_doit(*args: str, recipes: Path | None = None, artifacts: Path, check: bool = True,
             repo: Path = REPO, python: str = sys.executable, env: dict[str, str] | None = None,
             umask: int = -1) -> subprocess.CompletedProcess:
    """doit as a user runs it, from a checkout (``repo``: this one, or a copy whose code a test edits), with
    ``python`` (another venv path) and ``env`` (on top of this process's) if given."""
    env = {**os.environ, "VITQ_ARTIFACTS": str(artifacts), **(env or {})}
    env.pop("PYTHONHASHSEED", None)
    if recipes is not None:
        env["VITQ_RECIPES"] = str(recipes)
    proc = subprocess.run(
        [python, "-m", "doit", "-f", str(repo / "dodo.py"), *args],
        cwd=repo, env=env, capture_output=True, text=True, timeout=900, umask=umask,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"doit {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def copy_checkout(folder: Path) -> Path:
    """A copy of this checkout's code and recipes in another place (to edit vitq's own sources as an upgrade
    would, or to build from another path)."""
    import shutil

    folder.mkdir(parents=True)
    shutil.copytree(REPO / "vitq", folder / "vitq", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "recipes", folder / "recipes")
    shutil.copy(REPO / "dodo.py", folder / "dodo.py")
    return folder


def tasks_ran(proc: subprocess.CompletedProcess) -> set[str]:
    """Tasks doit executed (lines '.  task'), as opposed to those it found up to date ('-- task')."""
    return {line[3:].strip() for line in proc.stdout.splitlines() if line.startswith(".  ")}


def tasks_skipped(proc: subprocess.CompletedProcess) -> set[str]:
    return {line[3:].strip() for line in proc.stdout.splitlines() if line.startswith("-- ")}


def write_recipe(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


def quick_digits(folder: Path, name: str = "quick", extra: str = "", holdout: float = 0.2, pte: bool = False) -> Path:
    """The digits recipe with a short training run: same chain, seconds instead of a minute. Two epochs
    give a weak model whose int8 twins may differ on a few images: loose gates (this is not about accuracy).
    Without the .pte unless asked: its export is the slowest stage, and these tests are about doit."""
    return write_recipe(folder, name, f"extends: {DIGITS}\nweights: {{train: {{epochs: 2, holdout: {holdout}}}}}\n"
                        f"checks: {{min_agreement: 0.8, max_accuracy_drop: 0.2}}\n"
                        f"executorch: {{enabled: {str(pte).lower()}}}\n{extra}")


@pytest.fixture(scope="session")
def digits_build(tmp_path_factory) -> Path:
    """The real default recipe built once, end to end, through doit: artifacts/digits of a fresh root. Two doit
    workers, as on a 2-core machine: the two .pte candidates lower side by side (training runs alone, it comes first)."""
    root = tmp_path_factory.mktemp("artifacts")
    proc = run_doit("-n", "2", "build:digits", artifacts=root)
    (root / "build-output.txt").write_text(proc.stdout)
    return root / "digits"


@pytest.fixture(scope="session")
def tiny_chain(tmp_path_factory):
    """A tiny random-weights ViT built in this process (every stage, no doit), each stage on a recipe that records
    the fields it reads: (ArtifactPaths, FieldReads)."""
    from helpers_models import build, recording_field_reads, tiny_recipe

    folder = tmp_path_factory.mktemp("tiny-inprocess")
    recipe = tiny_recipe(folder)
    with recording_field_reads(recipe) as reads:
        paths = build(recipe, folder / "artifacts")
    return paths, reads


@pytest.fixture(scope="session")
def tiny_build(tiny_chain):
    """The tiny build's ArtifactPaths. Shared: copy it before changing it."""
    return tiny_chain[0]


@pytest.fixture(scope="session")
def tiny_field_reads(tiny_chain):
    """Stage name -> the recipe fields that stage read while building the tiny build."""
    return tiny_chain[1]


@pytest.fixture(scope="session")
def built_tiny(tmp_path_factory):
    """A tiny random-weights ViT built through doit from a user's sample folder. Copy it before changing it."""
    from helpers_models import TINY_TIMM, make_images

    recipes = tmp_path_factory.mktemp("tiny-recipes")
    root = tmp_path_factory.mktemp("tiny-artifacts")
    make_images(recipes / "images")
    write_recipe(recipes, "tiny", TINY_TIMM.format(extra=""))
    run_doit("build:tiny", recipes=recipes, artifacts=root)
    return recipes, root


def copy_build(build, tmp_path):
    """A private copy of a shared build (recipes folder, artifacts root) to edit or break."""
    import shutil

    recipes, root = tmp_path / "recipes", tmp_path / "artifacts"
    shutil.copytree(build[0], recipes)
    shutil.copytree(build[1], root)
    return recipes, root


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on 127.0.0.1 (a free port) with one bucket, for the whole session; stopped after."""
    from s3_server import moto_s3

    with moto_s3() as server:
        yield server


@pytest.fixture(scope="session", autouse=True)
def _no_shared_cache():
    """Tests' builds never read or fill a developer's shared build cache; the cache tests set their own."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("VITQ_CACHE", raising=False)
        patch.delenv("VITQ_CACHE_MODE", raising=False)
        yield



# Session fixtures that build a whole chain (seconds to minutes): the tests that use one run on one worker.
SHARED_BUILDS = {"tiny_chain": "tiny-build", "digits_build": "digits-build", "built_tiny": "tiny-doit"}


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(items):
    """Under pytest-xdist (`--dist loadgroup`), the tests that share a session build run on one worker, so it is built
    once per run, not once per worker; so do the tests of a module that share one of its module-scoped fixtures (on
    the worker of the module's session build, if some of its tests use one). The others are spread one by one."""
    def shared(item):
        fixtures = getattr(item, "fixturenames", ())
        return next((group for fixture, group in SHARED_BUILDS.items() if fixture in fixtures), None)

    def module_scoped(item):
        return any(d.scope == "module" for defs in item._fixtureinfo.name2fixturedefs.values() for d in defs)

    module_groups = {}
    for item in items:
        if shared(item) and module_scoped(item):
            module_groups.setdefault(item.nodeid.split("::")[0], shared(item))
    for item in items:
        module = item.nodeid.split("::")[0]
        group = shared(item) or (module_groups.get(module, module) if module_scoped(item) else None)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """Each xdist worker, then the controller, exits as vitq's own commands do (vitq.errors.exit_code): without a
    last garbage-collector sweep over torch's objects."""
    from vitq.errors import exit_code

    exit_code(0)
