"""The only exceptions a user sees. Each renders as one line naming the file and the field."""

from __future__ import annotations

from pathlib import Path


INTERRUPTED_EXIT = 130  # the shell's code for a Ctrl-C; our commands print one word instead of a traceback


class VitqError(Exception):
    """A problem caused by the user's input or environment, not a bug in vitq."""


class RecipeError(VitqError):
    """A recipe (or a file it points at) is wrong. ``str()`` is ``<file>: <field>: <problem>``."""

    def __init__(self, path: Path | str, field: str | None, problem: str):
        self.path = Path(path)
        self.field = field
        self.problem = problem
        where = f"{display_path(self.path)}: {field}" if field else display_path(self.path)
        super().__init__(one_line(f"{where}: {problem}"))


class InputError(VitqError):
    """A data file (image, labels, weights, artifact) is missing or unreadable."""

    def __init__(self, path: Path | str, problem: str):
        self.path = Path(path)
        super().__init__(one_line(f"{display_path(self.path)}: {problem}"))


class GateError(VitqError):
    """A verification gate failed: the build must not be released."""


def one_line(text: str) -> str:
    """Escape line breaks and other control characters (a YAML key may be "\\n"): errors stay one line."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text)


def display_path(path: Path | str) -> str:
    """Show paths under the working directory relative to it: shorter, and the same on every machine."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(p)
