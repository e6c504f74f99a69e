"""The checks a build must pass before it is released. Pure functions of eval metrics + recipe.

Which variant gets which check comes from the variant table: a float variant with a file of its own must
match the reference, every quantized variant must agree with it and keep its accuracy.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from vitq.recipe import Recipe
from vitq.variants import REFERENCE, variants_for

BUILD_PATHS = "no_build_paths"
NOT_APPLICABLE = "not applicable: random weights, accuracy is not meaningful"


def run_checks(recipe: Recipe, metrics: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Numerical checks always apply; accuracy checks only where the weights are trained."""
    limits = recipe.checks
    meaningful = recipe.accuracy_meaningful
    reference_top1 = metrics[REFERENCE]["top1"]
    checks = []
    for variant in variants_for(recipe):
        if variant.id == REFERENCE or variant.id not in metrics:  # not evaluated: a failed candidate
            continue
        m = metrics[variant.id]
        quantized = variant.is_quantized(recipe)
        if not quantized and variant.shipped:  # an exported float file: must compute what fp32 does
            checks.append(gate(f"{variant.id}.max_abs_logit_diff", m["max_abs_logit_diff"],
                               float_tolerance(recipe, metrics[REFERENCE]), "<="))
            checks.append(gate(f"{variant.id}.agreement", m["agreement"], 1.0, ">="))
        elif quantized:
            drop = round(reference_top1 - m["top1"], 6)
            checks.append(gate(f"{variant.id}.agreement", m["agreement"], limits.min_agreement, ">=", meaningful))
            checks.append(gate(f"{variant.id}.accuracy_drop", drop, limits.max_accuracy_drop, "<=", meaningful))
    return checks


def float_tolerance(recipe: Recipe, reference: dict[str, Any]) -> float:
    """The |logit| difference an exported float file may have against fp32: ``checks.onnx_atol``, or
    ``checks.onnx_rtol`` of fp32's largest |logit| (``max_abs_logit``) where that is more."""
    relative = Decimal(repr(recipe.checks.onnx_rtol)) * Decimal(repr(reference.get("max_abs_logit", 0.0)))
    return max(recipe.checks.onnx_atol, float(relative))  # in decimal: 1e-5 of 2.1e7 is 210, not 210.00000000000003


def build_path_check(found: dict[str, list[str]], forbidden: dict[str, str]) -> dict[str, Any]:
    """No released file may hold this machine's paths (``found``: file -> paths in it, from vitq.model.relative_paths)."""
    check = gate(BUILD_PATHS, len(found), 0, "<=")
    if found:
        check["note"] = "; ".join(f"{file} contains {paths[0]} ({forbidden[paths[0]]})" for file, paths in sorted(found.items()))
    return check


def delegation_check(recipe: Recipe, delegation: dict[str, Any], variant: str = "pte") -> dict[str, Any]:
    """The ExecuTorch program runs in XNNPACK, not on portable kernels: at most ``checks.max_portable_nodes`` graph
    nodes outside it. A failure names each operator left out and the partitioner's reason. A failed candidate (not
    lowered, not run, or off fp32: the pte stage left it empty) fails its ``<variant>.lowered`` check instead, with
    the reason."""
    if "failed" in delegation:
        return {**gate(f"{variant}.lowered", 0, 1, ">="), "note": delegation["failed"]}
    check = gate(f"{variant}.portable_nodes", delegation["portable_nodes"], recipe.checks.max_portable_nodes, "<=")
    if delegation["portable_nodes"]:
        reasons = delegation.get("portable_reasons", {})
        check["note"] = "left on portable kernels: " + ", ".join(
            f"{op} x{n} ({reasons.get(op, 'no reason given')})" for op, n in delegation["portable_operators"].items())
    return check


def choose_candidate(candidates: list[str], checks: list[dict[str, Any]]) -> tuple[str | None, list[dict[str, Any]]]:
    """The ExecuTorch candidate that ships: the first (in the recipe's order) whose checks (those named
    ``<variant>.*``) all pass, not-applicable counting as passed; and per candidate its checks, whether it passed,
    whether it shipped and why."""
    records, chosen = [], None
    for variant in candidates:
        own = [c for c in checks if c["name"].split(".")[0] == variant]
        missed = failures(own)
        passed = not missed
        if passed and chosen is None:
            chosen = variant
            earlier = [r["variant"] for r in records]
            why = (f"the first candidate that passes its gates ({', '.join(earlier)} did not)" if earlier
                   else "the first candidate, and it passes its gates")
        elif passed:
            why = f"passes its gates, but {chosen} comes first in executorch.quantize"
        else:
            why = "missed " + "; ".join(m.removeprefix("check failed: ") for m in missed)
        records.append({"variant": variant, "checks": own, "passed": passed, "shipped": variant == chosen, "why": why})
    return chosen, records


def failures(checks: list[dict[str, Any]]) -> list[str]:
    """One line per failed check: variant, metric, value and threshold, and what was found where the check says."""
    return [
        f"check failed: {c['name']}: {c['note']}" if c["name"] == BUILD_PATHS else
        f"check failed: {c['name']} = {c['value']:.6g}, needs {c['op']} {c['threshold']:.6g}"
        + (f": {c['note']}" if c.get("note") else "")
        for c in checks if c["passed"] is False
    ]


def gate(name: str, value: float, threshold: float, op: str, applies: bool = True) -> dict[str, Any]:
    """One check as the manifest records it: passed (None where it does not apply, with the reason)."""
    passed = (value <= threshold if op == "<=" else value >= threshold) if applies else None
    check = {"name": name, "passed": passed, "value": value, "threshold": threshold, "op": op}
    if not applies:
        check["note"] = NOT_APPLICABLE
    return check
