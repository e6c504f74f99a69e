"""The only exceptions a user sees. Each renders as one line naming the file and the field."""

from __future__ import annotations

from pathlib import Path


class VitqError(Exception):
    """A problem caused by the user's input or environment, not a bug in vitq."""


class RecipeError(VitqError):
    """A recipe (or a file it points at) is wrong. ``str()`` is ``<file>: <field>: <problem>``."""

    def __init__(self, path: Path | str, field: str | None, problem: str):
        self.path = Path(path)
        self.field = field
        self.problem = problem
        where = f"{display_path(self.path)}: {field}" if field else display_path(self.path)
        super().__init__(f"{where}: {problem}")


class InputError(VitqError):
    """A data file (image, labels, weights, artifact) is missing or unreadable."""

    def __init__(self, path: Path | str, problem: str):
        self.path = Path(path)
        super().__init__(f"{display_path(self.path)}: {problem}")


class GateError(VitqError):
    """A verification gate failed: the build must not be released."""


def display_path(path: Path | str) -> str:
    """Show paths under the working directory relative to it: shorter, and the same on every machine."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(p)
