"""The command line: ``python -m vitq.bench RECIPE_FILE ARTIFACTS_ROOT [options]`` (see ``vitq.bench``).

Exit codes: 0 done, 2 user error (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from vitq.errors import VitqError, run_command

DEFAULT_REPEATS = 10
DEFAULT_WARMUP = 2
DEFAULT_BATCH_SIZES = (1, 8)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
    parser = argparse.ArgumentParser(prog="python -m vitq.bench",
                                     description="latency, size and peak extra memory of every variant of a build")
    parser.add_argument("recipe_file")
    parser.add_argument("artifacts_root", type=Path)
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS,
                        help=f"timed runs per batch size (default {DEFAULT_REPEATS})")
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, help=f"untimed runs first (default {DEFAULT_WARMUP})")
    parser.add_argument("--threads", type=int, default=None, help="threads for torch and onnxruntime (default: the recipe's)")
    parser.add_argument("--batch-sizes", default=",".join(map(str, DEFAULT_BATCH_SIZES)),
                        help="comma-separated batch sizes (default 1,8)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return run_command(lambda: bench(parser.parse_args(argv)))


def bench(args: argparse.Namespace) -> int:
    from vitq.bench.measure import check_built, run_bench
    from vitq.layout import ArtifactPaths
    from vitq.model.torch_setup import configure_torch
    from vitq.recipe import load_recipe

    try:
        batch_sizes = tuple(int(b) for b in args.batch_sizes.split(",") if b.strip())
    except ValueError:
        raise VitqError(f"--batch-sizes: expected comma-separated integers, got '{args.batch_sizes}'") from None
    if args.threads is not None and args.threads < 1:
        raise VitqError("--threads must be >= 1")
    recipe = load_recipe(args.recipe_file)
    paths = ArtifactPaths.for_recipe(args.artifacts_root, recipe.name)
    check_built(recipe, paths)  # before importing torch: the user learns at once
    configure_torch(recipe, args.threads)
    report = run_bench(recipe, paths, repeats=args.repeats, warmup=args.warmup, batch_sizes=batch_sizes,
                       threads=args.threads, progress=not args.no_progress)
    write_outputs(report, paths.bench_files)
    write_candidates_chart(report, paths)
    failed = [r["id"] for r in report["variants"] if r["error"]]
    print(f"  {recipe.name}:bench    {len(report['variants'])} variants x batch "
          f"{','.join(map(str, report['batch_sizes']))}, {report['threads']} thread(s) -> "
          f"{', '.join(p.name for p in paths.bench_files.values())}"
          + (f"  (FAILED: {', '.join(failed)})" if failed else ""), flush=True)
    return 0


def write_outputs(report: dict[str, Any], files: dict[str, Path]) -> None:
    """bench.png, bench.md, bench.json, each written atomically (bench.json last: it says the run finished)."""
    from vitq.bench.chart import chart
    from vitq.bench.report import markdown
    from vitq.fileio import atomic_path, write_text

    with atomic_path(files["png"]) as tmp:
        chart(report, tmp)
    write_text(files["md"], markdown(report))
    write_text(files["json"], json.dumps(report, indent=2) + "\n")


def write_candidates_chart(report: dict[str, Any], paths: Any) -> None:
    """candidates.png beside bench.png, for a build that chose among ExecuTorch candidates (its manifest lists
    them); not a task target, since most builds have one candidate."""
    from vitq.bench.chart import candidates_chart
    from vitq.fileio import atomic_path

    manifest = json.loads(paths.manifest.read_text(encoding="utf-8")) if paths.manifest.is_file() else {}
    if manifest.get("candidates"):
        with atomic_path(paths.root / "candidates.png") as tmp:
            candidates_chart(report, manifest["candidates"], tmp)


if __name__ == "__main__":
    sys.exit(main())
