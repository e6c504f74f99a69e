"""``vitq diff A B``: what differs between two builds, and from which stage each difference starts.

A and B are manifests, build folders or release tarballs. One line per difference: recipe fields, tool
versions, the sample set, and artifacts. Which stage a difference starts from comes from the pipeline: the
first stage that reads the field (or uses the tool, or writes the file), and everything downstream of it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vitq.check import manifest as mf
from vitq.orchestration.pipeline import Stage, stages_for
from vitq.recipe import Recipe


def load_manifest(target: Path) -> dict[str, Any]:
    """The manifest of a build folder, a manifest.json, or a release tarball (unpacked only in a temp folder)."""
    from vitq.ship.verify import opened_manifest

    with opened_manifest(target) as (manifest_path, _):
        return mf.load(manifest_path)


def differences(a: dict[str, Any], b: dict[str, Any], root: Path) -> list[str]:
    """Every difference between two manifests, one line each; empty when the builds are the same."""
    recipe = mf.recipe_from_manifest(b, root)
    stages = stages_for(recipe)
    lines = []
    fields_a, fields_b = _flatten(a["recipe"]["resolved"]), _flatten(b["recipe"]["resolved"])
    for key in sorted(set(fields_a) | set(fields_b)):
        if fields_a.get(key, _MISSING) != fields_b.get(key, _MISSING):
            start = _first(stages, lambda s, k=key: any(_covers(d, k) for d in s.fields))
            lines.append(f"recipe {key}: {_show(fields_a, key)} -> {_show(fields_b, key)} ({_from(start, stages, recipe)})")
    va, vb = a["versions"], b["versions"]
    for tool in sorted(set(va) | set(vb)):
        if va.get(tool) != vb.get(tool):
            start = _first(stages, lambda s, t=tool: t in s.tools or t == "python")
            lines.append(f"version {tool}: {va.get(tool, 'absent')} -> {vb.get(tool, 'absent')} ({_from(start, stages, recipe)})")
    if a["samples"]["sha256"] != b["samples"]["sha256"]:
        lines.append(f"samples: the sample images or labels differ ({_from(_named(stages, 'samples'), stages, recipe)})")
    arts_a, arts_b = ({x["name"]: x for x in m["artifacts"]} for m in (a, b))
    for name in [*arts_a, *(n for n in arts_b if n not in arts_a)]:
        x, y = arts_a.get(name), arts_b.get(name)
        if x is None or y is None:
            lines.append(f"artifact {name}: only in {'B' if x is None else 'A'}")
        elif x["sha256"] != y["sha256"]:
            lines.append(f"artifact {name} ({y['path']}): other bytes, {x['bytes']} -> {y['bytes']} bytes "
                         f"({_from(_named(stages, name), stages, recipe)})")
    if not lines:  # same inputs, same files: a figure can still differ where a runtime's kernels follow the CPU
        lines += _figures(a["accuracy"], b["accuracy"], _from(_named(stages, "eval"), stages, recipe))
    return lines


def _figures(a: dict[str, Any], b: dict[str, Any], start: str) -> list[str]:
    """Measured figures that differ although nothing they were measured from does: onnxruntime and XNNPACK
    choose kernels by CPUID, and a figure within their noise of a recording step lands on either side of it
    (README, "Same bytes in any place")."""
    lines = []
    for variant in [*a, *(v for v in b if v not in a)]:
        x, y = a.get(variant, {}), b.get(variant, {})
        for key in [*x, *(k for k in y if k not in x)]:
            if x.get(key) != y.get(key):
                lines.append(f"measured {variant} {key}: {x.get(key)} -> {y.get(key)} (same files: this runtime's "
                             f"kernels on another CPU; {start})")
    return lines


def _from(start: Stage | None, stages: list[Stage], recipe: Recipe) -> str:
    if start is None:
        return "no stage reads it"
    after = _downstream(start, stages, recipe)
    if not after:
        return f"rebuilds {start.name}"
    return f"rebuilds {start.name} and everything after it: {', '.join(after)}"


def _downstream(start: Stage, stages: list[Stage], recipe: Recipe) -> list[str]:
    """The stages that read, directly or not, a file the start stage writes (in build order)."""
    from vitq.layout import ArtifactPaths

    paths = ArtifactPaths(Path("/build"))
    dirty = set(start.outputs(recipe, paths).values())
    after = []
    for stage in stages[stages.index(start) + 1:]:
        if dirty & set(stage.inputs(recipe, paths).values()):
            after.append(stage.name)
            dirty |= set(stage.outputs(recipe, paths).values())
    return after


def _first(stages: list[Stage], reads) -> Stage | None:
    return next((s for s in stages if s.fields != ("*",) and reads(s)), None) or next(
        (s for s in stages if s.fields == ("*",)), None)


def _named(stages: list[Stage], name: str) -> Stage | None:
    return next((s for s in stages if s.name == name), None)


def _covers(declared: str, key: str) -> bool:
    return key == declared or key.startswith(declared + ".") or declared.startswith(key + ".")


_MISSING = object()


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict) and node:
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def _show(fields: dict[str, Any], key: str) -> str:
    return "absent" if key not in fields else json.dumps(fields[key])


