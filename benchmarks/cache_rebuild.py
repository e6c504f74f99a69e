"""Benchmark (prints figures, asserts nothing): a cold build vs a rebuild from the shared cache (VITQ_CACHE).

    .venv/bin/python benchmarks/cache_rebuild.py [--recipe digits] [--cache URL] [--baseline]

Builds the recipe with doit in a fresh output root against an empty cache (every stage runs and uploads),
then again in another fresh output root (every stage restored from the cache, no stage process), and prints
both times and their ratio (goal: at most 0.25x). The cache is moto's S3 server on 127.0.0.1 reached by
s3fs (tests/s3_server.py), unless --cache names another one (a fresh prefix of it is used). --baseline also
times a cold build without the cache, so the upload's cost shows. digits: about 2.5 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the moto server helper the cache tests use

from s3_server import moto_s3  # noqa: E402

from vitq.fileio import sha256_file  # noqa: E402


def doit_build(recipe: str, artifacts: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "doit", "-f", str(REPO / "dodo.py"), f"build:{recipe}"], cwd=REPO,
                          env={**env, "VITQ_ARTIFACTS": str(artifacts)}, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"doit build:{recipe} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return seconds


def files_of(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "build-log.jsonl"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="digits", help="a recipe under recipes/ (default: digits)")
    parser.add_argument("--cache", help="a cache URL (default: moto's S3 server on 127.0.0.1)")
    parser.add_argument("--baseline", action="store_true", help="also time a cold build without the cache")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHASHSEED", "VITQ_CACHE_MODE")}
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vitq-cache-bench-")))
        prefix = f"bench-{uuid.uuid4().hex[:8]}"
        if args.cache:
            url, where = f"{args.cache.rstrip('/')}/{prefix}", args.cache
        else:
            s3 = stack.enter_context(moto_s3())
            env.update(s3.env)
            url, where = s3.url(prefix), f"moto S3 server at {s3.endpoint}"
        print(f"recipe {args.recipe}; cache {url} ({where}); {os.cpu_count()} CPUs", flush=True)
        if args.baseline:
            plain = doit_build(args.recipe, tmp / "plain", {k: v for k, v in env.items() if k != "VITQ_CACHE"})
            print(f"cold build, no cache:                  {plain:7.1f} s", flush=True)
        env["VITQ_CACHE"] = url
        cold = doit_build(args.recipe, tmp / "cold", env)
        print(f"cold build, empty cache (uploads):     {cold:7.1f} s", flush=True)
        warm = doit_build(args.recipe, tmp / "warm", env)
        print(f"rebuild from the cache, fresh root:    {warm:7.1f} s", flush=True)
        print(f"ratio rebuild / cold build:            {warm / cold:7.3f}x  (goal <= 0.25x)")
        if args.baseline:
            print(f"upload cost in the cold build:         {cold - plain:7.1f} s ({(cold - plain) / plain:+.1%})")
        same = files_of(tmp / "warm" / args.recipe) == files_of(tmp / "cold" / args.recipe)
        print(f"identical files: {'yes' if same else 'NO'} ({len(files_of(tmp / 'cold' / args.recipe))} files)")


if __name__ == "__main__":
    main()
