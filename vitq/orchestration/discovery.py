"""Where recipes and builds are: the project's recipes/ folder plus VITQ_RECIPES, and the artifacts root.
Torch-free and cheap: dodo.py calls it on every doit command."""

from __future__ import annotations

import os
from pathlib import Path

from vitq.errors import RecipeError

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # the checkout: dodo.py, recipes/, vitq/
SUFFIX = ".yaml"


def recipe_dirs() -> list[Path]:
    """The project's recipes/ folder, then each folder in VITQ_RECIPES (os.pathsep-separated)."""
    dirs = [PROJECT_ROOT / "recipes"]
    extra = os.environ.get("VITQ_RECIPES", "")
    dirs += [Path(p) for p in extra.split(os.pathsep) if p]
    return dirs


def artifacts_root() -> Path:
    """Where builds go: VITQ_ARTIFACTS, or artifacts/ in the working directory."""
    return Path(os.environ.get("VITQ_ARTIFACTS") or "artifacts").absolute()


def discover() -> dict[str, Path]:
    """Every recipe file by name. Files starting with '_' are partial bases meant for ``extends``."""
    found: dict[str, Path] = {}
    for folder in recipe_dirs():
        if not folder.is_dir():
            if folder != PROJECT_ROOT / "recipes":
                raise RecipeError(folder, None, "VITQ_RECIPES names a folder that does not exist")
            continue
        for path in sorted(folder.glob(f"*{SUFFIX}")):
            if path.name.startswith("_"):
                continue
            name = path.stem
            if name in found and found[name].resolve() != path.resolve():
                raise RecipeError(path, None, f"recipe name '{name}' is also used by {found[name]}")
            found[name] = path
    return found
