"""The import structure: no circle among vitq's modules, and the torch-free core imports nothing above it."""

from __future__ import annotations

import graphlib

from vitq.fingerprint import PACKAGE_DIR, _direct_imports

# The core every layer builds on: torch-free, cheap to import (dodo.py loads it on every doit call).
CORE = {"vitq", "vitq.errors", "vitq.fileio", "vitq.progress", "vitq.recipe", "vitq.variants", "vitq.layout",
        "vitq.numerics"}


def modules() -> list[str]:
    names = []
    for file in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = file.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_no_module_imports_itself_through_others():
    graph = {module: _direct_imports(module) - {"vitq"} for module in modules()}
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        raise AssertionError(f"import circle: {' -> '.join(exc.args[1])}") from None


def test_the_core_imports_only_the_core():
    for module in CORE:
        assert _direct_imports(module) <= CORE, (module, sorted(_direct_imports(module) - CORE))
