"""The ``vitq`` command: one error boundary, one line per problem, meaningful exit codes.

    vitq verify MANIFEST|BUILD_DIR|RELEASE.tar.gz [--json] [--no-rerun]   0 intact, 1 problems, 2 bad input
    vitq verify --arch arm64 TARGET [--cpu A,B] [--limit N] [--runtime executorch==1.5.1]   the same exit codes
    vitq release BUILD_DIR [--out DIR] [--json]  0 packed, 2 not releasable / bad input
    vitq predict ARTIFACT IMAGE...               top-5 class names per image, from any variant
    vitq report RECIPE_OR_BUILD_DIR              report.md plus what each build stage cost (time, memory)
    vitq diff A B                                what differs between two builds and from which stage; 0 same, 1 not
    vitq cache status RECIPE                     per stage, would a build hit or miss the shared cache (VITQ_CACHE)
    vitq new MODEL [-o PATH]                     a recipe for a timm model or transformers hub id/folder, with its
                                                 own preprocessing (default recipes/<name>.yaml; never overwrites)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from vitq.errors import VitqError, exit_code, run_command

OK, PROBLEMS = 0, 1


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")  # torch's C++ notices are not for users
    parser = argparse.ArgumentParser(prog="vitq", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser("verify", help="re-hash, reload and re-run a build or release against its manifest")
    verify.add_argument("manifest", type=Path, help="manifest.json, a build folder, or a release .tar.gz as downloaded")
    verify.add_argument("--json", action="store_true", help="print a JSON result for CI")
    verify.add_argument("--no-rerun", action="store_true", help="only check files and hashes")
    verify.add_argument("--arch", choices=("x86_64", "arm64"), default="x86_64",
                        help="arm64: run every shipped mobile file in the aarch64 builds of its runtimes, emulated as "
                        "one ARM CPU per XNNPACK kernel family; writes arm64.json and a section of report.md")
    verify.add_argument("--cpu", type=lambda text: [c.strip() for c in text.split(",") if c.strip()],
                        help="with --arch arm64: emulated CPU models, comma-separated (default: "
                        "cortex-a53,cortex-a76,neoverse-v1,max)")
    verify.add_argument("--limit", type=int, help="with --arch arm64: only the first N sample images")
    verify.add_argument("--runtime", action="append", default=[],
                        help="with --arch arm64: also run the .pte in this ExecuTorch release and its torch, on x86-64 "
                        "and arm64, e.g. executorch==1.5.1 (repeatable)")
    verify.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="with --arch arm64: emulated runs at a time (each one core; default: the CPU count)")
    release = commands.add_parser("release", help="pack a passing build into a deterministic .tar.gz")
    release.add_argument("build_dir", type=Path, help="the recipe's artifact folder, e.g. artifacts/digits")
    release.add_argument("--out", type=Path, help="where to write it (default: <artifacts root>/releases)")
    release.add_argument("--json", action="store_true", help="print a JSON result for CI")
    predict = commands.add_parser("predict", help="top-5 classes for images with any built variant")
    predict.add_argument("artifact", type=Path, help="any model file of a build (the variant table, vitq/variants.py, lists them)")
    predict.add_argument("images", type=Path, nargs="+")
    predict.add_argument("--top", type=int, default=5)
    report = commands.add_parser("report", help="the build's report.md and each stage's seconds and peak memory")
    report.add_argument("build", help="a recipe name (under VITQ_ARTIFACTS) or its artifact folder")
    diff = commands.add_parser("diff", help="what differs between two builds, and from which stage each difference starts")
    diff.add_argument("a", type=Path, help="manifest.json, build folder or release .tar.gz")
    diff.add_argument("b", type=Path, help="the same for the other build")
    cache = commands.add_parser("cache", help="the shared build cache named by VITQ_CACHE")
    cache_commands = cache.add_subparsers(dest="cache_command", required=True)
    cache_status = cache_commands.add_parser("status", help="per stage, whether a build would hit or miss the cache "
                                             "(builds nothing)")
    cache_status.add_argument("recipe", help="a recipe name (recipes/ or VITQ_RECIPES) or its YAML file")
    new = commands.add_parser("new", help="write a recipe for a model, with the preprocessing of its pretrained config")
    new.add_argument("model", help="a timm model name, or a transformers hub id (owner/name) or local folder")
    new.add_argument("-o", "--output", type=Path, help="the recipe file to write (default: recipes/<name>.yaml)")
    args = parser.parse_args(argv)
    handler = {"verify": _verify, "release": _release, "predict": _predict, "report": _report, "diff": _diff,
               "cache": _cache_status, "new": _new}[args.command]
    return run_command(lambda: handler(args), prefix="vitq: ")


def _verify(args: argparse.Namespace) -> int:
    from vitq.ship.verify import verify_target

    if args.arch == "arm64":
        return _verify_arm64(args)
    arm_only = [flag for flag, value in (("--cpu", args.cpu), ("--limit", args.limit), ("--runtime", args.runtime))
                if value]
    if arm_only:
        raise VitqError(f"{arm_only[0]} applies to --arch arm64 only")
    problems = verify_target(args.manifest, rerun=not args.no_rerun)
    if args.json:
        print(json.dumps({"manifest": str(args.manifest), "ok": not problems, "problems": problems}, indent=2))
    else:
        for line in problems:
            print(line)
        if not problems:
            what = "hashes match" if args.no_rerun else "hashes, reload and re-run match"
            print(f"{args.manifest}: OK ({what})")
    return PROBLEMS if problems else OK


def _verify_arm64(args: argparse.Namespace) -> int:
    from vitq.ship.arm64 import record
    from vitq.ship.arm64.check import verify_arm64

    if args.limit is not None and args.limit < 1:
        raise VitqError(f"--limit {args.limit}: give a number of images, 1 or more")
    if args.no_rerun:
        raise VitqError("--no-rerun does not apply to --arch arm64: running the files is the check")
    found, problems = verify_arm64(args.manifest, args.cpu, args.limit, args.runtime, args.jobs, _progress_line)
    written = record.write(args.manifest, found) if found else None
    if args.json:
        print(json.dumps({"manifest": str(args.manifest), "ok": not problems, "problems": problems,
                          "record": str(written) if written else None}, indent=2))
    else:
        for line in problems:
            print(line)
        if found:
            runs = [r for r in found["runs"] if r["arch"] == "aarch64"]
            cpus = sorted({r["cpu"] for r in runs})
            verdict = "OK" if not problems else f"{len(problems)} problem(s)"
            print(f"{args.manifest}: arm64 {verdict} ({found['images']} images on {', '.join(cpus)}; "
                  f"runtimes {', '.join(sorted({r['runtime'] for r in runs}))}) -> {written}")
    return PROBLEMS if problems else OK


def _progress_line(line: str) -> None:
    """Progress of a long check, where vitq's progress goes (stderr unless VITQ_PROGRESS_FD), never stdout."""
    from vitq.progress import default_stream

    stream = default_stream()
    stream.write(f"arm64  {line}\n")
    stream.flush()


def _release(args: argparse.Namespace) -> int:
    from vitq.fileio import sha256_file
    from vitq.layout import ArtifactPaths
    from vitq.ship.release import make_release

    out = args.out or ArtifactPaths(args.build_dir.absolute()).release_dir
    target = make_release(args.build_dir, out)
    digest = sha256_file(target)
    if args.json:
        print(json.dumps({"release": str(target), "sha256": digest, "bytes": target.stat().st_size}, indent=2))
    else:
        print(f"{target}  sha256 {digest}")
    return OK


def _predict(args: argparse.Namespace) -> int:
    from vitq.ship.predict import predict

    for image, best in predict(args.artifact, args.images, top=args.top):
        print(f"{image}:")
        for rank, (index, name, prob) in enumerate(best, start=1):
            print(f"  {rank}. {name} ({index})  {prob:.1%}")
    return OK


def _report(args: argparse.Namespace) -> int:
    from vitq.build.costs import format_costs
    from vitq.build.discovery import artifacts_root
    from vitq.layout import ArtifactPaths

    folder = Path(args.build)
    paths = ArtifactPaths(folder if folder.is_dir() else ArtifactPaths.for_recipe(artifacts_root(), args.build).root)
    if paths.report.is_file():
        print(paths.report.read_text(encoding="utf-8"))
    print("## Build cost (latest run of each stage; not part of the manifest)\n")
    print(format_costs(paths.build_log))
    return OK


def _diff(args: argparse.Namespace) -> int:
    from vitq.ship.diff import differences, load_manifest

    lines = differences(load_manifest(args.a), load_manifest(args.b), args.b.absolute())
    for line in lines:
        print(line)
    if not lines:
        print(f"{args.a} and {args.b}: the same build")
    return PROBLEMS if lines else OK


def _cache_status(args: argparse.Namespace) -> int:
    from vitq.build.cache import URL_VAR, Store, settings, status
    from vitq.build.discovery import artifacts_root, discover
    from vitq.layout import ArtifactPaths
    from vitq.recipe import load_recipe

    config = settings()
    if config is None:
        raise VitqError(f"{URL_VAR} is not set: name the cache, e.g. {URL_VAR}=s3://bucket/prefix")
    found = discover()
    if args.recipe in found:
        recipe = load_recipe(found[args.recipe])
    elif args.recipe.endswith((".yaml", ".yml")):
        recipe = load_recipe(args.recipe)
    else:
        raise VitqError(f"{args.recipe}: no such recipe (known: {', '.join(sorted(found))})")
    paths = ArtifactPaths.for_recipe(artifacts_root(), recipe.name)
    print(f"{recipe.name}: {URL_VAR}={config.url} (mode {config.mode}), builds in {paths.root}")
    for verdict in status(recipe, paths, Store.open(config.url)):
        print(f"  {verdict.stage:<10} {(verdict.key or '')[:12]:<12}  {verdict.state}")
    return OK


def _new(args: argparse.Namespace) -> int:
    import re

    from vitq.build.discovery import PROJECT_ROOT
    from vitq.errors import InputError
    from vitq.fileio import write_text
    from vitq.model.model_recipe import recipe_text
    from vitq.recipe import load_recipe

    name = re.sub(r"[^A-Za-z0-9_-]", "_", Path(args.model.rstrip("/")).name)
    target = args.output or PROJECT_ROOT / "recipes" / f"{name}.yaml"
    if target.exists():
        raise InputError(target, "exists already; vitq new never overwrites a recipe (give another -o PATH)")
    text = recipe_text(args.model)
    write_text(target, text)
    try:
        load_recipe(target)
    except Exception:
        target.unlink()  # a recipe vitq wrote must validate: never leave one that does not
        raise
    print(f"{target}: recipe for {args.model}; build it with doit build:{target.stem}{recipes_hint(target, PROJECT_ROOT)}")
    return OK


def recipes_hint(target: Path, project: Path) -> str:
    """What doit needs to find a recipe written to ``target``: nothing in the project's recipes/ (however the path
    was spelt: relative, through a symlink), else the VITQ_RECIPES setting of its folder."""
    folder = target.resolve().parent
    return "" if folder == (project / "recipes").resolve() else f" (VITQ_RECIPES={folder})"


def console() -> int:
    """The `vitq` command (pyproject's console script): main, then a quick exit."""
    return exit_code(main())


if __name__ == "__main__":
    sys.exit(console())
