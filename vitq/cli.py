"""The ``vitq`` command: one error boundary, one line per problem, meaningful exit codes.

    vitq verify MANIFEST [--json] [--no-rerun]   0 intact, 1 problems found, 2 bad input
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from vitq.errors import VitqError

OK, PROBLEMS, USAGE = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")  # torch's C++ notices are not for users
    parser = argparse.ArgumentParser(prog="vitq", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser("verify", help="re-hash, reload and re-run a build against its manifest.json")
    verify.add_argument("manifest", type=Path)
    verify.add_argument("--json", action="store_true", help="print a JSON result for CI")
    verify.add_argument("--no-rerun", action="store_true", help="only check files and hashes")
    args = parser.parse_args(argv)
    try:
        return _verify(args)
    except VitqError as exc:
        print(f"vitq: {exc}", file=sys.stderr)
        return USAGE


def _verify(args: argparse.Namespace) -> int:
    from vitq.verify import verify

    problems = verify(args.manifest, rerun=not args.no_rerun)
    if args.json:
        print(json.dumps({"manifest": str(args.manifest), "ok": not problems, "problems": problems}, indent=2))
    else:
        for line in problems:
            print(line)
        if not problems:
            what = "hashes match" if args.no_rerun else "hashes, reload and re-run match"
            print(f"{args.manifest}: OK ({what})")
    return PROBLEMS if problems else OK


if __name__ == "__main__":
    sys.exit(main())
