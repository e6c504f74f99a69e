"""Recipes -> doit task dicts. Runs inside dodo.py, so it must not import torch."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

from doit.action import CmdAction
from doit.exceptions import TaskFailed
from doit.tools import config_changed

from vitq.errors import VitqError
from vitq.fileio import canonical
from vitq.layout import ArtifactPaths
from vitq.orchestration.actions import run_bench, run_stage
from vitq.orchestration.discovery import discover
from vitq.orchestration.fingerprint import stage_fingerprint
from vitq.orchestration.pipeline import STAGES, model_files, stages_for
from vitq.recipe import Recipe, load_recipe


def all_tasks(artifacts_root: Path) -> Iterator[dict[str, Any]]:
    """Every task for every recipe found. A broken recipe becomes a task that fails with its one-line error."""
    yield {"basename": "build", "name": None, "doc": "build every artifact of a recipe: doit build:<recipe>"}
    yield {"basename": "release", "name": None, "doc": "deterministic .tar.gz of a verified build: doit release:<recipe>"}
    yield {"basename": "bench", "name": None, "doc": "latency, size and memory of every variant: doit bench:<recipe>"}
    yield {"basename": "verify", "name": None, "doc": "check a build against its manifest: doit verify:<recipe>"}
    yield {"basename": "verify_arm64", "name": None,
           "doc": "run the mobile files on emulated ARM CPUs: doit verify_arm64:<recipe> [--cpu A,B] [--limit N]"}
    for stage in STAGES:
        yield {"basename": stage.name, "name": None, "doc": stage.doc}
    for name, path in discover().items():
        try:
            recipe = load_recipe(path)
            paths = ArtifactPaths.for_recipe(artifacts_root, recipe.name)
        except VitqError as exc:
            yield _broken(name, str(exc))
            continue
        yield from recipe_tasks(recipe, paths)


def recipe_tasks(recipe: Recipe, paths: ArtifactPaths) -> Iterator[dict[str, Any]]:
    names = []
    for stage in stages_for(recipe):
        # Reruns when the stage's code, the recipe fields it reads or its tools change; doit hashes the files.
        config = stage_fingerprint(stage, recipe)
        names.append(f"{stage.name}:{recipe.name}")
        outputs = stage.outputs(recipe, paths).values()
        yield {
            "basename": stage.name,
            "name": recipe.name,
            "doc": f"{stage.doc} -> {', '.join(p.relative_to(paths.root).as_posix() for p in outputs)}",
            "actions": [(run_stage, [stage.name, recipe.source, str(paths.root.parent)])],
            "file_dep": [str(p) for p in stage.inputs(recipe, paths).values()],
            "targets": [str(p) for p in outputs],
            "uptodate": [config_changed(canonical(config))],
            "clean": True,
            "verbosity": 2,
        }
    yield {
        "basename": "build",
        "name": recipe.name,
        "doc": f"build every artifact of recipe {recipe.name}",
        "actions": None,
        "task_dep": names,
    }
    yield {
        "basename": "release",
        "name": recipe.name,
        "doc": f"pack recipe {recipe.name}'s verified build into releases/{recipe.name}-{recipe.version}.tar.gz",
        "actions": [[sys.executable, "-m", "vitq.cli", "release", str(paths.root), "--out", str(paths.release_dir)]],
        "file_dep": [str(paths.manifest)],
        "targets": [str(paths.release_dir / f"{recipe.name}-{recipe.version}.tar.gz")],
        "clean": True,
        "verbosity": 2,
    }
    yield {
        "basename": "bench",
        "name": recipe.name,
        "doc": f"latency, size and memory of every variant of {recipe.name} -> bench.json, bench.md, bench.png",
        "actions": [(run_bench, [recipe.source, str(paths.root.parent)])],
        "file_dep": [str(p) for p in bench_inputs(recipe, paths)],
        "targets": [str(p) for p in paths.bench_files.values()],
        "uptodate": [False],
        "clean": True,
        "verbosity": 2,
        "params": [  # doit bench:<recipe> --repeats 50 --warmup 5
            {"name": "repeats", "long": "repeats", "type": int, "default": None,
             "help": "timed runs per variant and batch size (default: python -m vitq.bench's)"},
            {"name": "warmup", "long": "warmup", "type": int, "default": None,
             "help": "untimed runs first (default: python -m vitq.bench's)"},
        ],
    }
    yield {
        "basename": "verify",
        "name": recipe.name,
        "doc": f"re-hash, reload and re-run recipe {recipe.name}'s artifacts against its manifest",
        "actions": [[sys.executable, "-m", "vitq.cli", "verify", str(paths.manifest)]],
        "file_dep": [str(paths.manifest)],
        "uptodate": [False],
        "verbosity": 2,
    }


    yield {
        "basename": "verify_arm64",
        "name": recipe.name,
        "doc": f"run recipe {recipe.name}'s shipped mobile files in the aarch64 runtimes on emulated ARM CPUs -> arm64.json",
        "actions": [CmdAction(partial(_verify_arm64_command, paths.root), shell=False)],
        "file_dep": [str(paths.manifest)],
        "targets": [str(paths.root / "arm64.json")],
        "uptodate": [False],
        "verbosity": 2,
        "params": [  # doit verify_arm64:<recipe> --cpu cortex-a53,max --limit 50 --runtime=executorch==1.5.1 (doit
            # reads a bare NAME=VALUE argument as a variable: the value goes after "=")
            {"name": "cpu", "long": "cpu", "type": str, "default": "", "help": "emulated CPU models, comma-separated"},
            {"name": "limit", "long": "limit", "type": int, "default": 0, "help": "only the first N sample images"},
            {"name": "runtime", "long": "runtime", "type": str, "default": "",
             "help": "also this ExecuTorch release's runtime, e.g. --runtime=executorch==1.5.1"},
        ],
    }


def _verify_arm64_command(root: Path, cpu: str, limit: int, runtime: str) -> list[str]:
    """vitq verify --arch arm64 with the task's options (doit passes its params by name)."""
    command = [sys.executable, "-m", "vitq.cli", "verify", "--arch", "arm64", str(root)]
    command += ["--cpu", cpu] if cpu else []
    command += ["--limit", str(limit)] if limit else []
    command += ["--runtime", runtime] if runtime else []
    return command


def bench_inputs(recipe: Recipe, paths: ArtifactPaths) -> list[Path]:
    """The build outputs a benchmark reads: every variant's file and the sample images."""
    return [*model_files(recipe, paths).values(), paths.samples_labels]


def _broken(name: str, message: str) -> dict[str, Any]:
    return {
        "basename": "build",
        "name": name,
        "doc": f"BROKEN RECIPE: {message}",
        "actions": [lambda: TaskFailed(message)],
        "verbosity": 2,
    }
