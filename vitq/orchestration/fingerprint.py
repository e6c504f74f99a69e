"""What a stage's result depends on: the vitq code it runs, the recipe fields it reads, the tool versions
that shape its bytes. doit reruns a stage when this changes (``config_changed``), so an upgrade of vitq or
of a library never serves stale artifacts, and an edit reruns only the stages that read it.

The code a stage runs is found statically (``ast``): its module and every ``vitq`` module it imports,
at top level or inside functions, followed transitively. No torch import: this runs when doit loads.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path
from typing import Any

from vitq.check.versions import tool_versions
from vitq.recipe import Recipe

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # vitq/
# Every stage runs through these (vitq.orchestration.runner sets torch up before the stage module runs).
ALWAYS = ("vitq.model.torch_setup",)
NUMERICS = "vitq.numerics"  # what pinned stages run under


def module_file(module: str) -> Path | None:
    parts = module.split(".")[1:]
    base = PACKAGE_DIR.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@functools.cache
def _direct_imports(module: str) -> frozenset[str]:
    file = module_file(module)
    if file is None:
        return frozenset()
    found: set[str] = set()
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"), str(file))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "vitq"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] == "vitq":
                found.add(node.module)
                found |= {f"{node.module}.{alias.name}" for alias in node.names}  # `from vitq import models`
    return frozenset(m for m in found if module_file(m) is not None)


@functools.cache
def code_closure(module: str) -> tuple[str, ...]:
    """The vitq modules ``module`` may run: itself and everything it imports, transitively, sorted."""
    seen, todo = set(), [module, *ALWAYS]
    while todo:
        current = todo.pop()
        if current not in seen and module_file(current) is not None:
            seen.add(current)
            todo.extend(_direct_imports(current))
    return tuple(sorted(seen))


@functools.cache
def code_digest(module: str) -> str:
    """sha256 over the source of every module in the closure (names and bytes)."""
    digest = hashlib.sha256()
    for name in code_closure(module):
        digest.update(f"{name}\0".encode() + module_file(name).read_bytes() + b"\0")
    return digest.hexdigest()


def field_values(recipe: Recipe, fields: tuple[str, ...]) -> dict[str, Any]:
    """The recipe fields a stage reads, as plain JSON data, paths relative to the recipe file (so a checkout
    elsewhere has the same fingerprint and cache keys). A field under a missing section is None."""
    resolved = recipe.resolved()
    values: dict[str, Any] = {}
    for dotted in fields:
        if dotted == "*":
            values[dotted] = resolved
            continue
        node: Any = resolved
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        values[dotted] = node
    return values



def stage_fingerprint(stage: Any, recipe: Recipe, tools: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Everything that shapes a stage's output except its input files (doit hashes those itself); for a pinned
    stage also the numerics it runs under (vitq.numerics: its settings and code)."""
    return {
        "code": code_digest(stage.module),
        "fields": field_values(recipe, stage.fields),
        "tools": tool_versions(stage.tools if tools is None else tools),
        **({"numerics": code_digest(NUMERICS)} if getattr(stage, "pinned", False) else {}),
    }
