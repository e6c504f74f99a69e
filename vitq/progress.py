"""Progress of long work (training, evaluation, export steps, bench) on stderr: a bar on a terminal, plain lines
elsewhere, nothing when switched off.

Why: the digits training is ~45 s and a deit_base evaluation minutes of silence. Why stderr: stdout carries each
stage's one summary line (the build cache keeps it). Why plain lines off a terminal: a bar's carriage returns make
CI logs and doit's captured output unreadable, so there it is one line at most every ``INTERVAL`` seconds, plus a
final one. Why a prefix: every line starts with ``recipe:stage`` (set once per stage process by vitq.orchestration.runner through
``stage()``), so the output of several builds at once stays readable.

Where it goes: the file descriptor in ``VITQ_PROGRESS_FD`` (vitq.orchestration.actions passes doit's own stderr there, because a
stage's stderr is a pipe read for its one-line error: progress must be seen live, and must not be mistaken for
that error), else ``sys.stderr``. Mode: ``VITQ_PROGRESS`` = ``bar``, ``lines`` or ``off``; unset, a bar when that
stream is a terminal, else lines.

Progress only reads what the work computes (a loss, a count), so artifacts are byte-identical with it on or off.
Torch-free: vitq.orchestration.stage_process imports it inside doit.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

MODE_VAR = "VITQ_PROGRESS"
FD_VAR = "VITQ_PROGRESS_FD"
MODES = ("bar", "lines", "off")
INTERVAL = 5.0  # seconds between plain lines of one piece of work

_prefix: str | None = None
_fd_streams: dict[int, TextIO] = {}


@contextlib.contextmanager
def stage(prefix: str | None) -> Iterator[None]:
    """Every progress line inside starts with ``prefix`` (``recipe:stage``)."""
    global _prefix
    before, _prefix = _prefix, prefix
    try:
        yield
    finally:
        _prefix = before


def current_prefix() -> str | None:
    return _prefix


def default_stream() -> TextIO:
    """``VITQ_PROGRESS_FD`` when it names an open descriptor, else ``sys.stderr`` (looked up now: tests swap it)."""
    fd = os.environ.get(FD_VAR, "")
    if fd.isdigit():
        if int(fd) not in _fd_streams:
            try:
                _fd_streams[int(fd)] = os.fdopen(int(fd), "w", buffering=1, encoding="utf-8", closefd=False)
            except OSError:
                return sys.stderr
        return _fd_streams[int(fd)]
    return sys.stderr


def choose_mode(stream: TextIO) -> str:
    """``VITQ_PROGRESS`` if set (bar, lines or off), else a bar on a terminal and lines anywhere else."""
    wanted = os.environ.get(MODE_VAR, "").strip().lower()
    if wanted in MODES:
        return wanted
    try:
        return "bar" if stream.isatty() else "lines"
    except (AttributeError, ValueError, OSError):
        return "lines"


class Progress:
    """The part of tqdm's interface vitq uses (``update``, ``set_postfix_str``, ``write``, ``close``, ``n``), plus
    ``step`` for work made of a few named steps. A context manager: leaving it closes the bar; leaving it by an
    exception prints no final line, so an error stays the last line.

    ``fallback_prefix`` is used where no stage set one (``vitq verify``, ``python -m vitq.bench``).
    """

    def __init__(self, total: int, desc: str = "", unit: str = "", *, fallback_prefix: str | None = None,
                 mode: str | None = None, stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic,
                 interval: float | None = None):
        self.total, self.desc, self.unit, self.n = int(total), desc, unit, 0
        self.prefix = _prefix or fallback_prefix
        self.stream = stream if stream is not None else default_stream()
        self.mode = mode or choose_mode(self.stream)
        if self.mode not in MODES:
            raise ValueError(f"progress mode must be one of {MODES}, got {self.mode!r}")
        self.postfix = ""
        self._clock = clock
        self._interval = INTERVAL if interval is None else interval
        self._started = self._last_line = clock()
        self._step: str | None = None
        self._closed = False
        self._bar: Any = None
        if self.mode == "bar":
            from tqdm import tqdm

            label = " ".join(part for part in (self.prefix, desc) if part)
            self._bar = tqdm(total=self.total, desc=label, unit=unit or desc or "it", file=self.stream,
                             dynamic_ncols=True, leave=True)

    @property
    def enabled(self) -> bool:
        """False when switched off: work done only to be shown (a held-out score) can be skipped."""
        return self.mode != "off"

    def shows_next(self, n: int = 1) -> bool:
        """Whether ``update(n)`` (or, at the end, the final line) will show the postfix: work done only to be
        shown can be skipped when it would not be."""
        if self.mode != "lines":
            return self.enabled
        return self.n + n >= self.total or self._clock() - self._last_line >= self._interval

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.mode == "lines" and self.n < self.total and self._clock() - self._last_line >= self._interval:
            self._line(self._status())

    def set_postfix_str(self, text: str) -> None:
        """What is being done now (shown on the bar, and in the next plain line)."""
        self.postfix = text
        if self._bar is not None:
            self._bar.set_postfix_str(text)

    def step(self, name: str) -> None:
        """Start the next of ``total`` named steps (the one before is done): on a bar the step's name, as plain
        output one line per step."""
        if self._step is not None:
            self.n += 1
            if self._bar is not None:
                self._bar.update(1)
        self._step = name
        self.set_postfix_str(name)
        if self.mode == "lines":
            self._line(f"{self.desc} step {self.n + 1}/{self.total}: {name}".strip())

    def write(self, text: str) -> None:
        """A message that is not progress (shown even when progress is off), above the bar if there is one."""
        text = f"{self.prefix}  {text.strip()}" if self.prefix else text
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            self._print(text)

    def close(self, finished: bool = True) -> None:
        """The final line (plain mode), or the bar left at its end; ``finished=False``: just close the bar."""
        if self._closed:
            return
        self._closed = True
        if finished and self._step is not None and self.n < self.total:
            self.update(self.total - self.n)  # the last step is done
        if self._bar is not None:
            self._bar.close()
        elif self.mode == "lines" and finished:
            self._line(f"{self._status()} done")

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: Any, *_: Any) -> None:
        self.close(finished=kind is None)

    def _status(self) -> str:
        if self._step is not None:
            return f"{self.desc} {self.n}/{self.total} steps".strip()
        parts = [self.desc, f"{self.n}/{self.total}", self.unit, self.postfix]
        return " ".join(part for part in parts if part)

    def _line(self, text: str) -> None:
        self._last_line = self._clock()
        self._print(f"{self.prefix + '  ' if self.prefix else ''}{text}  [{self._last_line - self._started:.1f}s]")

    def _print(self, text: str) -> None:
        try:
            self.stream.write(text + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # a closed terminal or log must not fail the work
            pass
