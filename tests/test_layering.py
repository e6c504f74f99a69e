"""The import structure: no circle among vitq's modules, and every import points down the layers the manual (docs/architecture.md)
draws (core <- model <- check <- stages <- orchestration <- ship, bench <- cli). The runner starts stages by name
(importlib), which is not an import and so not an arrow."""

from __future__ import annotations

import graphlib
import re
from pathlib import Path

from vitq.orchestration.fingerprint import PACKAGE_DIR, _direct_imports

# The core every layer builds on: torch-free, cheap to import (dodo.py loads it on every doit call).
CORE = {"vitq", "vitq.errors", "vitq.fileio", "vitq.progress", "vitq.recipe", "vitq.variants", "vitq.layout",
        "vitq.numerics"}
# Bottom to top; a module may import its own layer and those below it.
LAYERS = ("core", "model", "check", "stages", "orchestration", "ship", "bench", "cli")
RANK = {"core": 0, "model": 1, "check": 2, "stages": 3, "orchestration": 4, "ship": 5, "bench": 5, "cli": 6}
ARCHITECTURE = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"


def modules() -> list[str]:
    names = []
    for file in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = file.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def layer(module: str) -> str:
    parts = module.split(".")
    if module == "vitq.cli":
        return "cli"
    if len(parts) > 1 and parts[1] in RANK:
        return parts[1]
    assert module in CORE, f"{module}: not in a layer folder and not in the core"
    return "core"


def test_no_module_imports_itself_through_others():
    graph = {module: _direct_imports(module) - {"vitq"} for module in modules()}
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        raise AssertionError(f"import circle: {' -> '.join(exc.args[1])}") from None


def test_every_import_points_down_the_layers():
    upward = [f"{module} ({layer(module)}) imports {dep} ({layer(dep)})"
              for module in modules() for dep in sorted(_direct_imports(module))
              if RANK[layer(dep)] > RANK[layer(module)]]
    assert upward == []


def test_the_core_imports_only_the_core():
    for module in CORE:
        assert _direct_imports(module) <= CORE, (module, sorted(_direct_imports(module) - CORE))


def test_the_top_of_the_package_holds_only_the_core_and_the_entry_point():
    top = {f"vitq.{p.stem}" if p.stem != "__init__" else "vitq" for p in PACKAGE_DIR.glob("*.py")}
    assert top == CORE | {"vitq.cli"} and len(top) <= 10


def test_the_manuals_layer_table_names_every_module_in_its_folder():
    """The layer table of docs/architecture.md (one row per folder) lists exactly the modules that folder holds."""
    rows = dict(re.findall(r"^\| `(vitq/[a-z_/]*)` \| ([^|]+) \|", ARCHITECTURE.read_text(), re.M))
    folders = {f"vitq/{sub}/" if sub != "core" else "vitq/" for sub in LAYERS if sub != "cli"}
    assert set(rows) == folders, sorted(set(rows) ^ folders)
    for folder, cell in rows.items():
        listed = set(re.findall(r"`([a-z0-9_]+(?:\.py|/))`", cell))
        here = PACKAGE_DIR.parent / folder
        actual = {p.name for p in here.glob("*.py") if p.name != "__init__.py"}
        actual |= {f"{p.name}/" for p in here.iterdir() if p.is_dir() and (p / "__init__.py").exists()
                   and f"vitq/{p.name}/" not in folders and p.name != "__pycache__"}
        assert listed == actual, (folder, sorted(listed ^ actual))


def test_every_vitq_name_the_benchmarks_import_exists():
    """benchmarks/ run by hand, not in the suite: a moved module or name must still resolve there."""
    import ast
    import importlib

    missing = []
    for script in sorted((PACKAGE_DIR.parent / "benchmarks").glob("*.py")):
        for node in ast.walk(ast.parse(script.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "vitq":
                module = importlib.import_module(node.module)
                missing += [f"{script.name}: {node.module}.{a.name}" for a in node.names
                            if not hasattr(module, a.name) and importlib.util.find_spec(f"{node.module}.{a.name}") is None]
    assert missing == []
