"""The only exceptions a user sees. Each renders as one line naming the file and the field
(a recipe with several problems: a count line, then one such line per problem)."""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TypeVar

T = TypeVar("T")
USER_ERROR = 2  # a VitqError: bad input, shown as its one line
INTERRUPTED_EXIT = 130  # the shell's code for a Ctrl-C


class VitqError(Exception):
    """A problem caused by the user's input or environment, not a bug in vitq."""


class RecipeError(VitqError):
    """A recipe (or a file it points at) is wrong. ``str()`` is ``<file>: <field>: <problem>``.

    ``RecipeError.many`` holds several problems, so one run reports them all: ``<file>: N problems``,
    then one ``<file>: <field>: <problem>`` line each. ``problems`` lists ``(field, problem)`` pairs.
    """

    def __init__(self, path: Path | str, field: str | None, problem: str):
        self.path = Path(path)
        self.field = field
        self.problem = problem
        self.problems = [(field, problem)]
        super().__init__(self._line(field, problem))

    @classmethod
    def many(cls, path: Path | str, problems: list[tuple[str | None, str]]) -> RecipeError:
        """One error for several problems; a single problem is the plain one-line error."""
        if len(problems) == 1:
            return cls(path, *problems[0])
        error = cls(path, None, f"{len(problems)} problems")
        error.problems = list(problems)
        error.args = ("\n".join([str(error), *(error._line(f, p) for f, p in problems)]),)
        return error

    def _line(self, field: str | None, problem: str) -> str:
        where = f"{display_path(self.path)}: {field}" if field else display_path(self.path)
        return one_line(f"{where}: {problem}")


class InputError(VitqError):
    """A data file (image, labels, weights, artifact) is missing or unreadable."""

    def __init__(self, path: Path | str, problem: str):
        self.path = Path(path)
        super().__init__(one_line(f"{display_path(self.path)}: {problem}"))


class GateError(VitqError):
    """A verification gate failed: the build must not be released."""


def guarded(body: Callable[[], T]) -> tuple[int, T | None, str | None]:
    """The error boundary, as data: (0, body's value, None), or a VitqError's or a Ctrl-C's exit code and one
    line. Anything else is a vitq bug and propagates with its traceback."""
    try:
        return 0, body(), None
    except VitqError as exc:
        return USER_ERROR, None, str(exc)
    except KeyboardInterrupt:
        return INTERRUPTED_EXIT, None, "interrupted"


def run_command(body: Callable[[], int], prefix: str = "") -> int:
    """The error boundary of every vitq entry point: a VitqError or a Ctrl-C is one line on stderr and an
    exit code, never a traceback."""
    code, value, error = guarded(body)
    if error is not None:
        print(f"{prefix}{error}", file=sys.stderr)
        return code
    return value


def exit_code(code: int) -> int:
    """``code``, for a process that is about to exit: what it allocated is frozen out of the garbage collector's
    reach first, so the interpreter's last sweep does not walk torch's, executorch's and transformers' objects
    (about 1.5 s per process with them loaded; the OS frees the memory anyway). Only at the very end of a process:
    objects frozen are never collected."""
    import gc

    gc.freeze()
    return code


@contextlib.contextmanager
def converting(recipe_file: Path | str, field: str, what: str, hint: str) -> Iterator[None]:
    """Around a library's conversion of the user's model (scripting, saving, exporting, lowering): a failure there
    means the format cannot take this model, so it becomes one RecipeError line naming the recipe, the field to
    change, the library's first line and what to try. A VitqError passes through unchanged."""
    try:
        yield
    except VitqError:
        raise
    except Exception as exc:
        raise RecipeError(recipe_file, field, f"{what} failed ({first_line(exc)[:200]}); {hint}") from None


@contextlib.contextmanager
def quiet_stderr(into: IO[str] | None = None) -> Iterator[None]:
    """Send file descriptor 2 to /dev/null (or to the open file ``into``, to read what was logged) meanwhile:
    libraries log to it from Python and C++ alike (torch.export's fake-tensor traces, the ExecuTorch runtime's CPU
    probing), and the one-line error must stand alone. Progress has a descriptor of its own (vitq.progress)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") if into is None else contextlib.nullcontext(into) as sink:
            os.dup2(sink.fileno(), 2)
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def first_line(exc: BaseException) -> str:
    """What a library's exception says, cut to its first line (its class name when it says nothing): the part
    that goes into a one-line error."""
    lines = TERMINAL_STYLES.sub("", str(exc)).strip().splitlines()  # torch.onnx colours its messages
    return lines[0] if lines else exc.__class__.__name__


TERMINAL_STYLES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # ANSI colour and style sequences


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
