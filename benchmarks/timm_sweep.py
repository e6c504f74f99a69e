"""Compatibility sweep (prints and writes a table, asserts nothing): the smallest image classifier of every timm
architecture family, random weights, the recipe ``vitq new`` would write (the model's own preprocessing, no other
setting), built through doit offline with every format: does each format build with default settings, and if not,
the one-line reason.

    .venv/bin/python benchmarks/timm_sweep.py [--families xcit,edgenext] [--jobs 2] [--out benchmarks/timm_sweep.md]
                                              [--timeout 1800] [--keep DIR] [--list] [--merge | --rest]
                                              [--reclassify KEPT_DIR]

A family is a timm model module (``timm.list_modules()``: vision_transformer, xcit, edgenext, ...); its member is
chosen programmatically: every model the module registers is built on the meta device (no memory, no weights) and
the ImageNet-1k classifier with the fewest parameters wins (ties: the shorter name; timm's ``test_*`` toy models are
left out), unless MEMBERS below names one (about 5 minutes for all families on 2 cores). A family with no such
classifier (CLIP towers, headless encoders) is listed as not swept. A member over 40 M parameters is built with
``depth=2`` where its constructor takes it (BEiT-Base, SAM's ViT: the same operators, two blocks; the table shows
the kwargs). ``--list`` prints
the chosen members and stops. Each family is one ``doit -c build:<family>`` in its own temporary VITQ_ARTIFACTS and
VITQ_RECIPES (``--jobs`` builds run side by side, each its own doit database; no shared cache), its wall clock the
build time. Columns per family: the timm model, its parameters, per format (.ptl: the int8 TorchScript chain; onnx:
fp32 and int8; .pte: the ExecuTorch program that ships) ``ok``, or the one-line reason, or the gates it failed
(the build finishes and its manifest says passed: false; e.g. more .pte nodes on portable kernels than the 5
allowed), the .pte's graph nodes left
on portable kernels over all its nodes, the sizes (fp32.safetensors, int8.ptl, int8.onnx, .pte, MB) and the build
seconds. The same rows go to a JSON file beside the Markdown one. The full sweep takes hours on 2 cores: run it on a
quiet machine; a subset with ``--families`` (with ``--merge``, the other families' rows stay in the table), or
what an interrupted sweep has not reached with ``--rest``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FORMATS = (".ptl", "onnx", ".pte")
# doit task (stage) -> the format it belongs to; other stages (fp32, samples, eval, manifest) belong to all
STAGE_FORMAT = {"int8": ".ptl", "optimized": ".ptl", "lite": ".ptl", "onnx_fp32": "onnx", "onnx_int8": "onnx",
                "pte": ".pte", "pte_8da4w": ".pte", "pte_static_int8": ".pte", "pte_none": ".pte"}
FORMAT_FILES = {".ptl": ("int8.ptl",), "onnx": ("fp32.onnx", "int8.onnx")}
PTE_VARIANTS = (("pte", "int8.pte"), ("pte_8da4w", "8da4w.pte"), ("pte_static_int8", "static_int8.pte"),
                ("pte_none", "fp32.pte"))  # vitq.variants' ExecuTorch candidates and their files
# family -> timm model where the smallest by parameters is not the one to sweep: xcit_nano_12_p8_224 ties with p16
# (same weights) but has 4x the tokens
MEMBERS: dict[str, str] = {"xcit": "xcit_nano_12_p16_224"}
TOY_PREFIX = "test_"  # timm's test_vit, test_convnext, ...: toy configurations for timm's own tests, not swept
CLASSES = 1000  # a member classifies ImageNet-1k (what the photos samples are labelled with): CLIP towers (ViTamin's
# 768 to 1152 "classes" are embedding widths) and headless encoders (Qwen3, Gemma 4, DeepSeek vision towers) do not
LARGE = 40e6  # a member with more parameters is swept with two blocks (SHALLOW), where its constructor takes depth
SHALLOW = {"depth": 2}


def families() -> list[str]:
    import timm

    return sorted(m for m in timm.list_modules() if timm.list_models(module=m))


def parameters(name: str, **kwargs) -> int | None:
    """Parameters of a timm ImageNet-1k classifier with its default settings (and kwargs), built on the meta device;
    None if it does not build or classifies something else."""
    import timm
    import torch

    try:
        with torch.device("meta"):
            model = timm.create_model(name, pretrained=False, **kwargs)
    except Exception:
        return None
    if getattr(model, "num_classes", None) != CLASSES:
        return None
    return sum(p.numel() for p in model.parameters())


def smallest_member(family: str) -> tuple[str, int | None, dict]:
    """The family's model to sweep (MEMBERS, or the ImageNet-1k classifier with the fewest parameters), its
    parameter count and the kwargs it is built with (SHALLOW where it is LARGE: the same operators, fewer blocks).
    ValueError where the family has no ImageNet-1k classifier."""
    import timm

    if family in MEMBERS:
        return MEMBERS[family], parameters(MEMBERS[family]), {}
    sized = [(count, len(name), name) for name in timm.list_models(module=family)
             if not name.startswith(TOY_PREFIX) and (count := parameters(name)) is not None]
    if not sized:
        raise ValueError(f"{family}: no ImageNet-{CLASSES // 1000}k classifier")
    count, _, name = min(sized)
    if count > LARGE and (fewer := parameters(name, **SHALLOW)) is not None and fewer < count:
        return name, fewer, dict(SHALLOW)
    return name, count, {}


def recipe_text(model: str, kwargs: dict | None = None) -> str:
    """What ``vitq new`` writes for the model, its hub weights replaced by random ones (offline), with kwargs."""
    from vitq.model.model_recipe import model_section, preprocess_section

    section = model_section(model)
    preprocess = preprocess_section(section)
    if kwargs:
        section["kwargs"] = kwargs
    return (f"model: {json.dumps(section)}\npreprocess: {json.dumps(preprocess)}\n"
            "weights: {random: {seed: 0}}\nsamples: photos\n")


def failures(output: str) -> dict[str, str]:
    """Stage -> its one-line error, from doit's output (``TaskFailed - taskid:<stage>:<recipe>`` and the line
    after it)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    found = {}
    for i, line in enumerate(lines):
        match = re.search(r"taskid:([^:\s]+)", line)
        if line.startswith("TaskFailed") and match and i + 1 < len(lines):
            found.setdefault(match.group(1), lines[i + 1][:300])
    return found


def megabytes(path: Path) -> float | None:
    return round(path.stat().st_size / 1e6, 2) if path.is_file() and path.stat().st_size else None


def failed_gates(folder: Path) -> list[str]:
    """The manifest's failed checks (the build finishes, the manifest says passed: false), one line each."""
    manifest = folder / "manifest.json"
    checks = json.loads(manifest.read_text()).get("checks", []) if manifest.is_file() else []
    return [f"{c['name']} {c['value']} (allowed {c['op']} {c['threshold']})" for c in checks if c["passed"] is False]


def pte_result(folder: Path) -> tuple[str | None, dict | None, Path | None]:
    """The shipped ExecuTorch program (the manifest's; without a manifest, the first candidate lowered) with its
    delegation record, or else the first candidate's failure."""
    manifest = folder / "manifest.json"
    if manifest.is_file():
        shipped = [a for a in json.loads(manifest.read_text())["artifacts"] if a["format"] == "executorch"]
        if shipped:
            return None, shipped[0].get("delegation"), folder / shipped[0]["path"]
    failed = None
    for variant, name in PTE_VARIANTS:
        record_path = folder / f"{variant.replace('_', '-')}-delegation.json"  # vitq.layout's delegation_of
        record = json.loads(record_path.read_text()) if record_path.is_file() else None
        if megabytes(folder / name) and record:
            return None, record, folder / name
        if record and record.get("failed") and failed is None:
            failed = record["failed"]
    return failed, None, None


def sweep_one(family: str, model: str, count: int | None, kwargs: dict, folder: Path, timeout: int) -> dict:
    recipes, root = folder / family / "recipes", folder / family / "artifacts"
    name = f"sweep_{family}"  # not a shipped recipe's name (timm's deit module is also recipes/deit.yaml)
    recipes.mkdir(parents=True, exist_ok=True)
    row = {"family": family, "model": model, "parameters": count, **({"kwargs": kwargs} if kwargs else {})}
    try:
        (recipes / f"{name}.yaml").write_text(recipe_text(model, kwargs))
    except Exception as exc:
        return {**row, "formats": dict.fromkeys(FORMATS, f"no recipe: {str(exc).splitlines()[0][:200]}"),
                "seconds": 0}
    env = {**os.environ, "VITQ_RECIPES": str(recipes), "VITQ_ARTIFACTS": str(root), "VITQ_PROGRESS": "off",
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    env.pop("VITQ_CACHE", None)
    started = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "doit", "-c", "-f", str(REPO / "dodo.py"), f"build:{name}"],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
        output, code = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        output, code = f"TaskFailed - taskid:all:{family}\ntimed out after {timeout} s\n{exc.stdout or ''}", -1
    seconds = round(time.perf_counter() - started)
    (folder / family / "build.log").write_text(output)
    (folder / family / "build.json").write_text(json.dumps({"code": code, "seconds": seconds}))
    return classify(row, folder / family, output, code, seconds)


def reclassify(folder: Path, row: dict) -> dict:
    """A kept family folder's row again, from its build.log (after a change to how rows are read)."""
    kept = json.loads((folder / "build.json").read_text()) if (folder / "build.json").is_file() else {}
    output = (folder / "build.log").read_text()
    code = kept.get("code", 1 if "TaskFailed" in output else 0)
    return classify({k: row[k] for k in ("family", "model", "parameters", "kwargs") if k in row}, folder, output, code,
                    kept.get("seconds", row["seconds"]))


def classify(row: dict, folder: Path, output: str, code: int, seconds: int) -> dict:
    """The family's row: per format ok, the one-line reason, or the failed gates; nodes, sizes, seconds."""
    name = f"sweep_{row['family']}"
    root = folder / "artifacts"
    failed = failures(output)
    out = root / name
    # a shared stage (eval; manifest, unless it wrote a failed manifest: its gates) that did not finish
    shared_stages = [reason for stage, reason in failed.items() if stage not in STAGE_FORMAT
                     and not (stage == "manifest" and (out / "manifest.json").is_file())]
    common = shared_stages + [g for g in failed_gates(out) if g.split(".")[0] not in STAGE_FORMAT]
    formats, nodes = {}, None
    for fmt in FORMATS:
        stage_errors = [reason for stage, reason in failed.items() if STAGE_FORMAT.get(stage) == fmt]
        if fmt == ".pte":
            reason, record, _ = pte_result(out)
            built = reason is None and record is not None
            if record:
                nodes = f"{record['portable_nodes']} / {record['portable_nodes'] + record['delegated_nodes']}"
            reason = stage_errors[0] if stage_errors else reason
        else:
            built = all(megabytes(out / name) for name in FORMAT_FILES[fmt])
            reason = stage_errors[0] if stage_errors else None
        gates = [g for g in failed_gates(out) if STAGE_FORMAT.get(g.split(".")[0]) == fmt]
        if built and not stage_errors and shared_stages:  # no evaluation or manifest: nothing was checked
            formats[fmt] = f"built, not checked: {shared_stages[0]}"
        elif built and not stage_errors and gates:
            formats[fmt] = "built, gate failed: " + "; ".join(gates)
        elif built and not stage_errors:
            formats[fmt] = "ok"
        else:
            formats[fmt] = reason or (common[0] if common else f"not built (doit exit {code})")
    pte_path = pte_result(out)[2]
    sizes = {"fp32": megabytes(out / "fp32.safetensors"), ".ptl": megabytes(out / "int8.ptl"),
             "onnx_int8": megabytes(out / "int8.onnx"), ".pte": megabytes(pte_path) if pte_path else None}
    if code == 0 and any(v != "ok" for v in formats.values()):
        common.append("doit succeeded but a file is missing")
    return {**row, "formats": formats, "all_formats": not common and all(v == "ok" for v in formats.values()),
            "portable_nodes": nodes, "sizes_mb": sizes, "seconds": seconds, "other_errors": common}


def markdown(rows: list[dict]) -> str:
    header = ["family", "timm model", "params (M)", *FORMATS, ".pte portable / total nodes",
              "fp32 MB", ".ptl MB", "int8 onnx MB", ".pte MB", "build s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    swept = [r for r in rows if not r.get("skipped")]
    for r in swept:
        sizes = r.get("sizes_mb", {})
        lines.append("| " + " | ".join([
            r["family"], f"`{r['model']}`" + "".join(f" {k}={v}" for k, v in r.get("kwargs", {}).items()), f"{r['parameters'] / 1e6:.1f}" if r["parameters"] else "-",
            *(cell(r["formats"][f]) for f in FORMATS), r.get("portable_nodes") or "-",
            *(str(sizes.get(k) or "-") for k in ("fp32", ".ptl", "onnx_int8", ".pte")), str(r["seconds"])]) + " |")
    good = sum(r.get("all_formats", False) for r in swept)
    lines += ["", f"{good} of {len(swept)} families ({100 * good / max(len(swept), 1):.0f} %) build every format "
              "with default settings."]
    if skipped := [r for r in rows if r.get("skipped")]:
        lines += ["", "Not swept, " + "; ".join(
            f"{reason} in the module: {', '.join(r['family'] for r in skipped if r['skipped'].split(': ', 1)[-1] == reason)}"
            for reason in dict.fromkeys(r["skipped"].split(": ", 1)[-1] for r in skipped)) + "."]
    return "\n".join(lines) + "\n"


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", help="comma-separated timm modules (default: all; see --list)")
    parser.add_argument("--jobs", type=int, default=1, help="builds side by side (default 1)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "timm_sweep.md",
                        help="the Markdown table; the JSON goes beside it (default benchmarks/timm_sweep.md)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per family's build (default 1800)")
    parser.add_argument("--keep", type=Path, help="build here and keep it (default: a temporary folder)")
    parser.add_argument("--list", action="store_true", help="print each family's member and stop")
    parser.add_argument("--reclassify", type=Path, metavar="DIR",
                        help="read the rows again from a --keep folder's build logs (families in the JSON), build nothing")
    parser.add_argument("--merge", action="store_true",
                        help="keep the rows of families not swept this time from the existing JSON")
    parser.add_argument("--rest", action="store_true",
                        help="sweep only the families (of --families, or all) missing from the existing JSON; "
                             "implies --merge")
    args = parser.parse_args()
    if args.reclassify:
        rows = json.loads(args.out.with_suffix(".json").read_text())
        rows = [reclassify(args.reclassify / r["family"], r)
                if (args.reclassify / r["family"] / "build.log").is_file() else r for r in rows]
        write_tables(sorted(rows, key=lambda r: r["family"]), args.out, len(families()))
        print(markdown(rows))
        return
    known = families()
    chosen = [f.strip() for f in args.families.split(",") if f.strip()] if args.families else known
    previous = json.loads(args.out.with_suffix(".json").read_text()) \
        if (args.merge or args.rest) and args.out.with_suffix(".json").is_file() else []
    if args.rest:
        chosen = [f for f in chosen if f not in {r["family"] for r in previous}]
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        parser.error(f"--families: unknown {', '.join(unknown)}; timm has {', '.join(known)}")
    members, skipped = {}, {}
    for family in chosen:
        try:
            members[family] = smallest_member(family)
        except ValueError as exc:
            skipped[family] = str(exc)
    if args.list:
        for family, (model, count, kwargs) in members.items():
            print(f"{family}: {model}{''.join(f' {k}={v}' for k, v in kwargs.items())} ({count / 1e6:.1f} M parameters)")
        for reason in skipped.values():
            print(f"not swept: {reason}")
        return
    rows: list[dict] = [r for r in previous if r["family"] not in chosen and r["family"] in known]
    rows += [{"family": family, "skipped": reason} for family, reason in skipped.items()]
    planned = len(rows) + len(members)
    # smallest first: an interrupted sweep has covered the most families, and its table so far is on disk
    chosen = sorted(members, key=lambda f: (members[f][1] is None, members[f][1] or 0, f))
    lock = threading.Lock()
    with tempfile.TemporaryDirectory(prefix="vitq-timm-sweep-") as tmp:
        folder = args.keep or Path(tmp)

        def one(family: str) -> None:
            row = sweep_one(family, *members[family], folder, args.timeout)
            print(f"{family} ({row['model']}): " + ", ".join(f"{f} {v}" for f, v in row["formats"].items())
                  + f"; {row['seconds']} s", flush=True)
            with lock:
                rows.append(row)
                write_tables(sorted(rows, key=lambda r: r["family"]), args.out, planned)

        with ThreadPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
            list(pool.map(one, chosen))
    print()
    print(markdown(sorted(rows, key=lambda r: r["family"])))
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}")


def write_tables(rows: list[dict], out: Path, planned: int) -> None:
    """The Markdown table and the JSON of the families swept so far (rewritten after each one)."""
    skipped = sum(bool(r.get("skipped")) for r in rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("# timm compatibility sweep\n\nGenerated by `benchmarks/timm_sweep.py`; random weights, "
                   "each family's smallest model with default settings. "
                   f"{sum(not r.get('skipped') for r in rows)} of {planned - skipped} classifier families swept"
                   f" ({skipped} of timm's {planned} model modules have no ImageNet-1k classifier).\n\n"
                   + markdown(rows))
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")

if __name__ == "__main__":
    main()
