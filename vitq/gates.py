"""The checks a build must pass before it is released. Pure functions of eval metrics + recipe."""

from __future__ import annotations

from typing import Any

from vitq.variants import QUANTIZED, REFERENCE
from vitq.recipe import Recipe

NOT_APPLICABLE = "not applicable: random weights, accuracy is not meaningful"


def run_checks(recipe: Recipe, metrics: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Numerical checks always apply; accuracy checks only where the weights are trained."""
    limits = recipe.checks
    onnx = metrics["onnx_fp32"]
    checks = [
        _check("onnx_fp32.max_abs_logit_diff", onnx["max_abs_logit_diff"], limits.onnx_atol, "<="),
        _check("onnx_fp32.agreement", onnx["agreement"], 1.0, ">="),
    ]
    meaningful = recipe.weights.kind != "random"
    reference_top1 = metrics[REFERENCE]["top1"]
    for variant in QUANTIZED:
        if variant not in metrics:
            continue
        m = metrics[variant]
        drop = round(reference_top1 - m["top1"], 6)
        checks.append(_check(f"{variant}.agreement", m["agreement"], limits.min_agreement, ">=", meaningful))
        checks.append(_check(f"{variant}.accuracy_drop", drop, limits.max_accuracy_drop, "<=", meaningful))
    return checks


def failures(checks: list[dict[str, Any]]) -> list[str]:
    """One line per failed check: variant, metric, value and threshold."""
    return [
        f"check failed: {c['name']} = {c['value']:.6g}, needs {c['op']} {c['threshold']:.6g}"
        for c in checks if c["passed"] is False
    ]


def _check(name: str, value: float, threshold: float, op: str, applies: bool = True) -> dict[str, Any]:
    passed = (value <= threshold if op == "<=" else value >= threshold) if applies else None
    check = {"name": name, "passed": passed, "value": value, "threshold": threshold, "op": op}
    if not applies:
        check["note"] = NOT_APPLICABLE
    return check
