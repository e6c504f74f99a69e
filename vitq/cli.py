"""The ``vitq`` command: one error boundary, one line per problem, meaningful exit codes.

``build_parser`` is the whole command line (its help is what users read, and docs/gen_pages.py renders the manual's
command page from it), importable without torch; each handler imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from vitq.errors import VitqError, exit_code, run_command

OK, PROBLEMS = 0, 1

DESCRIPTION = """\
vitq builds Vision Transformers for phones from YAML recipes: dynamic int8
TorchScript (.ptl), ONNX and ExecuTorch (.pte) files, checked against the float
model, with a manifest and a reproducible release. Builds run through doit
(`make build`, or `.venv/bin/doit build:digits` for recipes/digits.yaml);
this command checks, packs, compares and uses what they made.

Exit codes: 0 success, 1 problems found (verify, diff), 2 bad input (one line
on stderr)."""
# One example per command, shown under its --help and in the manual (docs/cli.md).
EXAMPLES = {
    "verify": "vitq verify artifacts/releases/digits-1.0.0.tar.gz",
    "release": "vitq release artifacts/digits",
    "predict": "vitq predict artifacts/digits/int8.ptl photo.jpg",
    "report": "vitq report digits",
    "diff": "vitq diff digits-1.0.0.tar.gz artifacts/releases/digits-1.0.0.tar.gz",
    "cache status": "VITQ_CACHE=s3://bucket/vitq-cache vitq cache status digits",
    "new": "vitq new mobilevit_s",
}


def _command(commands: argparse._SubParsersAction, name: str, summary: str, description: str,
             example_key: str | None = None) -> argparse.ArgumentParser:
    """A subcommand whose --help says what it does and shows one example."""
    example = EXAMPLES[example_key or name]
    return commands.add_parser(name, help=summary, description=f"{summary[0].upper()}{summary[1:]}.\n\n{description}",
                               epilog=f"example:\n  {example}", formatter_class=argparse.RawDescriptionHelpFormatter)


def build_parser() -> argparse.ArgumentParser:
    """The vitq command line: every subcommand, its arguments and its help."""
    parser = argparse.ArgumentParser(
        prog="vitq", description=DESCRIPTION, epilog="example:\n  vitq verify artifacts/digits\n\nRun `vitq COMMAND --help` for one command.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    verify = _command(commands, "verify", "check a build or a release against its manifest",
                      "Re-hashes every file, reloads every model and re-runs it on the sample images, comparing with\n"
                      "what the manifest recorded; a release tarball is unpacked into a temporary folder first. With\n"
                      "--arch arm64 it runs the shipped mobile files in the aarch64 runtimes under emulated ARM CPUs.\n"
                      "Exit 0 intact, 1 problems (one line each), 2 bad input.")
    verify.add_argument("manifest", type=Path, help="manifest.json, a build folder, or a release .tar.gz as downloaded")
    verify.add_argument("--json", action="store_true", help="print a JSON result for CI")
    verify.add_argument("--no-rerun", action="store_true", help="only check files and hashes")
    verify.add_argument("--arch", choices=("x86_64", "arm64"), default="x86_64",
                        help="arm64: run every shipped mobile file in the aarch64 builds of its runtimes, emulated as "
                        "one ARM CPU per XNNPACK kernel family; writes arm64.json and a section of report.md")
    verify.add_argument("--cpu", metavar="A,B", type=lambda text: [c.strip() for c in text.split(",") if c.strip()],
                        help="with --arch arm64: emulated CPU models, comma-separated (default: "
                        "cortex-a53,cortex-a76,neoverse-v1,max)")
    verify.add_argument("--limit", metavar="N", type=int, help="with --arch arm64: only the first N sample images")
    verify.add_argument("--runtime", metavar="PKG==VERSION", action="append", default=[],
                        help="with --arch arm64: also run the .pte in this ExecuTorch release and its torch, on x86-64 "
                        "and arm64, e.g. executorch==1.5.1 (repeatable)")
    verify.add_argument("--jobs", metavar="N", type=int, default=os.cpu_count() or 1,
                        help="with --arch arm64: emulated runs at a time (each one core; default: the CPU count)")
    release = _command(commands, "release", "pack a passing build into a reproducible .tar.gz",
                       "Writes <recipe>-<version>.tar.gz with the shipped files, manifest, report, SHA256SUMS and an\n"
                       "in-toto provenance statement; the same build gives the same bytes. What `doit release:<recipe>`\n"
                       "runs. Exit 0 packed, 2 not releasable (a failed gate) or bad input.")
    release.add_argument("build_dir", type=Path, help="the recipe's artifact folder, e.g. artifacts/digits")
    release.add_argument("--out", type=Path, help="where to write it (default: <artifacts root>/releases)")
    release.add_argument("--json", action="store_true", help="print a JSON result for CI")
    predict = _command(commands, "predict", "top-5 classes for images with any built model file",
                       "Loads the file in its own runtime (torch, lite interpreter, onnxruntime or ExecuTorch),\n"
                       "preprocesses each image as the recipe says and prints the best classes with their names.")
    predict.add_argument("artifact", type=Path,
                         help="any model file of a build: .safetensors, .pt, .ptl, .onnx or .pte")
    predict.add_argument("images", type=Path, nargs="+", help="image files (any format Pillow reads)")
    predict.add_argument("--top", metavar="N", type=int, default=5, help="how many classes per image (default: 5)")
    report = _command(commands, "report", "a build's report.md and what each stage cost",
                      "Prints report.md, then each stage's seconds of work, start-up seconds and peak memory from the\n"
                      "build log (the latest run of each stage).")
    report.add_argument("build", help="a recipe name (its folder under VITQ_ARTIFACTS) or an artifact folder")
    diff = _command(commands, "diff", "what differs between two builds, and from which stage",
                    "Compares two manifests: recipe fields, tool versions, sample sets and files, each difference\n"
                    "with the stage it starts from. Exit 0 the same build, 1 different.")
    diff.add_argument("a", type=Path, help="manifest.json, build folder or release .tar.gz")
    diff.add_argument("b", type=Path, help="the same for the other build")
    cache = commands.add_parser("cache", help="the shared build cache named by VITQ_CACHE",
                                description="The shared build cache named by VITQ_CACHE.",
                                epilog=f"example:\n  {EXAMPLES['cache status']}",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    cache_commands = cache.add_subparsers(dest="cache_command", required=True, metavar="COMMAND")
    cache_status = _command(cache_commands, "status", "whether each stage of a build would hit or miss the cache",
                            "Computes each stage's action key from the recipe and the files already built and asks\n"
                            "the cache (VITQ_CACHE, VITQ_CACHE_MODE) for it. Builds nothing.", "cache status")
    cache_status.add_argument("recipe", help="a recipe name (recipes/ or VITQ_RECIPES) or its YAML file")
    new = _command(commands, "new", "write a recipe for a timm or transformers model",
                   "The recipe has the preprocessing the model's weights were trained with (timm's pretrained_cfg,\n"
                   "or the transformers image processor's config), hub weights and the sample photos, and\n"
                   "validates as written. Never overwrites a file.")
    new.add_argument("model", help="a timm model name, or a transformers hub id (owner/name) or local folder")
    new.add_argument("-o", "--output", type=Path, help="the recipe file to write (default: recipes/<name>.yaml)")
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")  # torch's C++ notices are not for users
    args = build_parser().parse_args(argv)
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
    from vitq.layout import ArtifactPaths
    from vitq.orchestration.costs import format_costs
    from vitq.orchestration.discovery import artifacts_root

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
    from vitq.layout import ArtifactPaths
    from vitq.orchestration.cache import URL_VAR, Store, settings, status
    from vitq.orchestration.discovery import artifacts_root, discover
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

    from vitq.errors import InputError
    from vitq.fileio import write_text
    from vitq.model.model_recipe import recipe_text
    from vitq.orchestration.discovery import PROJECT_ROOT
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
