"""The human summary of a manifest: one table, printed at the end of a build and saved as report.md."""

from __future__ import annotations

from typing import Any

from vitq.variants import MOBILE, REFERENCE, VARIANTS, mobile_variant


def table(manifest: dict[str, Any]) -> str:
    artifacts = {**{c["variant"]: c for c in manifest.get("candidates", [])}, **{a["name"]: a for a in manifest["artifacts"]}}
    gates = _gates_by_variant(manifest["checks"])
    header = "| variant | file | size | vs fp32 | top-1 | top-5 | agreement | max Δlogit | mean Δlogit | gate |"
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    order = [v.id for v in VARIANTS if v.id in manifest["accuracy"]]
    for variant in order:
        m = manifest["accuracy"][variant]
        artifact = artifacts.get(variant)
        lines.append("| " + " | ".join([
            variant,
            artifact["path"] if artifact else "(in memory)",
            human_size(artifact["bytes"]) if artifact else "",
            f"{artifact['size_ratio_vs_fp32']:.3f}x" if artifact else "",
            f"{m['top1']:.1%}",
            f"{m['top5']:.1%}" if m.get("top5") is not None else "",
            f"{m['agreement']:.1%}",
            _bound(m["max_abs_logit_diff"]),
            _bound(m["mean_abs_logit_diff"]),
            gates.get(variant, "reference" if variant == REFERENCE else ""),
        ]) + " |")
    return "\n".join(lines)


def markdown(manifest: dict[str, Any]) -> str:
    recipe = manifest["recipe"]
    verdict = "PASSED" if manifest["passed"] else "FAILED"
    out = [
        f"# {recipe['name']} {recipe['version']}: {verdict}",
        "",
        f"Weights: {manifest['weights']['source']}; {manifest['accuracy'][REFERENCE]['n']} sample images, "
        f"{manifest['classes']} classes. Mobile artifact: {_mobile(manifest)}.",
    ]
    out += _delegation(manifest) + _torchscript(manifest)
    if manifest["weights"].get("note"):
        out += ["", f"**Note:** {manifest['weights']['note']}."]
    out += ["", table(manifest), *_candidates(manifest), "", "## Checks", "",
            "| check | value | threshold | result |", "|---|---|---|---|"]
    for c in manifest["checks"]:
        result = {True: "pass", False: "**FAIL**", None: "n/a"}[c["passed"]]
        out.append(f"| {c['name']} | {c['value']:.6g} | {c['op']} {c['threshold']:.6g} | {result} |")
    out += ["", "## Files", "", "| artifact | format | bytes | sha256 | parent |", "|---|---|---|---|---|"]
    for a in manifest["artifacts"]:
        out.append(f"| `{a['path']}` | {a['format']} | {a['bytes']} | `{a['sha256'][:16]}…` | {a['parent'] or ''} |")
    versions = ", ".join(f"{k} {v}" for k, v in sorted(manifest["versions"].items()))
    out += ["", f"Built with {versions}.", ""]
    return "\n".join(out)


def _candidates(manifest: dict[str, Any]) -> list[str]:
    """Each ExecuTorch candidate side by side, which one ships and why (the others stay in the build folder)."""
    candidates = manifest.get("candidates")
    if not candidates:
        return []
    out = ["", "## ExecuTorch candidates", "", f"In the order `executorch.quantize` lists them; b1 latency: `doit bench:"
           f"{manifest['recipe']['name']}` (bench.md, candidates.png).", "",
           "| candidate | file | size | vs fp32 | top-1 | agreement | max Δlogit | kept in float | shipped | why |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for c in candidates:
        out.append("| " + " | ".join([
            c["strategy"], f"`{c['path']}`", human_size(c["bytes"]), f"{c['size_ratio_vs_fp32']:.3f}x",
            *([f"{c['top1']:.1%}", f"{c['agreement']:.1%}", _bound(c["max_abs_logit_diff"])] if c["top1"] is not None
              else ["not built"] * 3), ", ".join(c["keep_float"]) or "none",
            "**yes**" if c["shipped"] else "no", c["why"]]) + " |")
    calibration = manifest.get("calibration")
    if calibration:
        out += ["", f"Calibration: {calibration['images']} images from the {calibration['source']} "
                f"(`{calibration['path']}`, sha256 `{calibration['sha256'][:16]}…`), none of them a sample image."]
    return out


def _delegation(manifest: dict[str, Any]) -> list[str]:
    """Say how much of each ExecuTorch program runs in XNNPACK: a model can silently fall back to slow kernels."""
    out = []
    for a in manifest["artifacts"]:
        d = a.get("delegation")
        if d:
            total = d["delegated_nodes"] + d["portable_nodes"]
            reasons = d.get("portable_reasons", {})
            portable = ", ".join(f"{op} x{n}" + (f" ({reasons[op]})" if op in reasons else "")
                                 for op, n in d["portable_operators"].items()) or "none"
            out += ["", f"ExecuTorch program `{a['path']}`: XNNPACK runs {d['delegated_nodes']} of {total} graph nodes "
                    f"({d['delegated_subgraphs']} subgraphs); on portable kernels: {portable}."]
    return out


def _torchscript(manifest: dict[str, Any]) -> list[str]:
    """How int8.pt was made where the build chose it: the method ``auto`` picked, the Linears left float."""
    out = []
    for a in manifest["artifacts"]:
        t = a.get("torchscript")
        if t:
            kept = t["keep_float"]
            names = ", ".join(f"`{n}`" for n in kept[:4]) + (f" and {len(kept) - 4} more" if len(kept) > 4 else "")
            out += ["", f"TorchScript `{a['path']}`: {'traced' if t['method'] == 'trace' else 'scripted'}" + (
                f"; {len(kept)} Linear(s) kept float, as the model's code reads their weight: {names}" if kept else "")
                + "."]
    return out


def _gates_by_variant(checks: list[dict[str, Any]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for c in checks:
        variant = c["name"].split(".")[0]
        state = {True: "pass", False: "FAIL", None: "n/a"}[c["passed"]]
        if out.get(variant) != "FAIL" and not (out.get(variant) == "pass" and state == "n/a"):
            out[variant] = state
    return out


def _bound(error: float) -> str:
    """A recorded error statistic is an upper bound at 2 significant digits (vitq.numerics)."""
    return "0" if error == 0 else f"≤ {error:.1e}"


def _mobile(manifest: dict[str, Any]) -> str:
    app = mobile_variant([a["name"] for a in manifest["artifacts"]])
    what = "float reference" if app == REFERENCE else ("PyTorch Lite, dynamic int8 for ARM/qnnpack" if app == MOBILE
                                                       else "ExecuTorch, XNNPACK")
    return f"`{_path(manifest, app)}` ({what})"


def _path(manifest: dict[str, Any], name: str) -> str:
    return next((a["path"] for a in manifest["artifacts"] if a["name"] == name), "?")


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)
