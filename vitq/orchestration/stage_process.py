"""Each stage runs in a process of its own, forked from a warm server that has already imported torch.

Why a process per stage: a crash or a kill stays contained, each stage's time and peak memory are its own,
and the doit process stays free of torch. Why forked from a server: a fresh interpreter spends 3-4 s
importing torch, timm and onnx before any work; the server (``multiprocessing``'s forkserver, one per doit
process) pays that once, and every stage starts from it in milliseconds.

The server starts with ``PYTHONHASHSEED`` fixed (saved TorchScript depends on it) and only imports
(``vitq.orchestration.stage_preload``): no torch op runs there, so no thread pool exists when it forks. A stage writes to
doit's own stdout and stderr (progress bars, warnings, a crash's traceback, live) and sends its result back
over a pipe: the summary, or its one-line error. If doit dies (even by SIGKILL), the stage sees its
lifeline pipe close and kills itself; the server exits when no stage is left. ``VITQ_STAGE_PROCESS=fresh``
starts a new interpreter per stage instead (``python -m vitq.orchestration.runner``).

A pinned stage (training, evaluation: ``vitq.numerics``) always gets a fresh interpreter, started with the
pinned CPU-capability and math-library settings: torch reads them when it loads, and the server has loaded it.
"""

from __future__ import annotations

import contextlib
import io
import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from vitq.errors import USER_ERROR, VitqError, guarded
from vitq.layout import ArtifactPaths
from vitq.orchestration.pipeline import stage_named
from vitq.orchestration.runner import HASH_SEED, RESULT_FD_VAR, StageRun, run_stage, stage_environ
from vitq.progress import FD_VAR as PROGRESS_FD_VAR
from vitq.recipe import Recipe

MODE_VAR = "VITQ_STAGE_PROCESS"
PRELOAD = ["vitq.orchestration.stage_preload"]
PROBLEMS_HEADER = re.compile(r": (\d+) problems$")

_context: multiprocessing.context.BaseContext | None = None


@dataclass
class StageResult:
    exitcode: int
    error: str | None = None  # a VitqError's text: one line, or a "<file>: N problems" block
    stdout: str = ""  # what else the stage printed (the build cache replays it on a hit)
    run: StageRun | None = None  # summary and costs, when it succeeded


def run(stage: str, recipe: Recipe, artifacts_root: str, keep_stdout: bool = False) -> StageResult:
    """Run one stage to its end; the caller shows its result. Ctrl-C here (KeyboardInterrupt) kills the stage and
    is raised on. The recipe, parsed once by the caller, goes to a forked stage as it is; a fresh interpreter
    reads the recipe file itself."""
    mode = os.environ.get(MODE_VAR, "forkserver")
    if mode not in ("forkserver", "fresh"):
        raise VitqError(f"{MODE_VAR}={mode!r}: expected forkserver or fresh")
    os.environ["PYTHONHASHSEED"] = HASH_SEED  # for the server (started once) or the fresh interpreter
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
    if mode == "fresh" or stage_named(stage).pinned:
        return _run_fresh(stage, recipe.source, artifacts_root, keep_stdout)
    return _run_forked(stage, recipe, artifacts_root)


def _server() -> multiprocessing.context.BaseContext:
    global _context
    if _context is None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)
        _context = context
    return _context


def _run_forked(stage: str, recipe: Recipe, artifacts_root: str) -> StageResult:
    context = _server()
    results_in, results_out = context.Pipe(duplex=False)
    lifeline_in, lifeline_out = context.Pipe(duplex=False)  # closes when this process ends, however it ends
    with _doit_streams() as (out, err):
        process = context.Process(target=_stage_main, name=f"vitq-{stage}", daemon=False,
                                  args=(stage, recipe, artifacts_root, results_out, lifeline_in, out, err,
                                        time.time()))
        try:
            process.start()
            results_out.close()
            lifeline_in.close()
            process.join()
        except BaseException:  # Ctrl-C: the stage goes too, its temp files never become targets
            if process.pid is not None:
                process.kill()
                process.join()
            raise
        finally:
            lifeline_out.close()
    result = results_in.recv() if results_in.poll() else StageResult(process.exitcode)
    results_in.close()
    result.exitcode = process.exitcode
    return result


@contextlib.contextmanager
def _doit_streams() -> Iterator[tuple[Connection | None, Connection | None]]:
    """Copies of doit's stdout and stderr descriptors for the stage (None where one has no descriptor)."""
    copies = [None if (fd := _dup(stream)) is None else Connection(fd, readable=False)
              for stream in (sys.stdout, sys.stderr)]
    try:
        yield copies[0], copies[1]
    finally:
        for copy in copies:
            if copy is not None:
                copy.close()


def _stage_main(stage: str, recipe: Recipe, artifacts_root: str, results: Connection, lifeline: Connection,
                out: Connection | None, err: Connection | None, requested: float) -> None:
    """In the forked stage process: doit's streams as its own, the stage, its result back to doit."""
    die_with_parent()  # with the server; and with doit through the lifeline (the server outlives doit)
    threading.Thread(target=_die_with_doit, args=(lifeline,), daemon=True).start()
    for copy, fd in ((out, 1), (err, 2)):
        if copy is not None:
            os.dup2(copy.fileno(), fd)
            copy.close()
    captured = _Tee(sys.stdout)
    sys.stdout = captured
    paths = ArtifactPaths.for_recipe(Path(artifacts_root), recipe.name)
    try:
        code, run, error = guarded(lambda: run_stage(stage, recipe, paths, requested=requested))
        result = StageResult(code, error=error, run=run)
    except BaseException:  # a vitq bug: its traceback, and doit says so
        traceback.print_exc()
        result = StageResult(1)
    sys.stdout.flush()
    sys.stderr.flush()
    result.stdout = captured.text()
    with contextlib.suppress(OSError):  # doit is gone: nobody to tell
        results.send(result)
        results.close()
    os._exit(result.exitcode)  # none of the server's atexit handlers


def _die_with_doit(lifeline: Connection) -> None:
    """Wait for doit's end of the lifeline to close: if the stage is still running then, doit was killed."""
    with contextlib.suppress(EOFError, OSError):
        lifeline.recv_bytes()
    os.kill(os.getpid(), signal.SIGKILL)


class _Tee(io.TextIOBase):
    """The stage's stdout: written through at once, and kept for the build cache's record."""

    def __init__(self, target):
        self.target, self.parts = target, []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return self.target.write(text)

    def flush(self) -> None:
        self.target.flush()

    def text(self) -> str:
        return "".join(self.parts)


def _run_fresh(stage: str, recipe_file: str, artifacts_root: str, keep_stdout: bool) -> StageResult:
    """A new interpreter per stage: its stderr is read when it ends, for its one-line error."""
    env = stage_environ(stage, os.environ)
    result_in, result_out = os.pipe()  # the stage's result as JSON (vitq.orchestration.runner), read when it ends
    env[RESULT_FD_VAR] = str(result_out)
    try:
        with progress_to_stderr(env) as progress_fds:
            proc = subprocess.run(
                [sys.executable, "-m", "vitq.orchestration.runner", stage, recipe_file, artifacts_root],
                env=env, stdout=subprocess.PIPE if keep_stdout else None, stderr=subprocess.PIPE, text=True,
                preexec_fn=die_with_parent, pass_fds=(*progress_fds, result_out),
            )
    finally:
        os.close(result_out)
    with open(result_in, encoding="utf-8") as fh:
        sent = fh.read()
    if keep_stdout:
        sys.stdout.write(proc.stdout)
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    if proc.returncode == USER_ERROR and lines:
        return StageResult(proc.returncode, error=user_error(lines), stdout=proc.stdout or "")
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        return StageResult(proc.returncode, stdout=proc.stdout or "")
    return StageResult(0, stdout=proc.stdout or "", run=StageRun(**json.loads(sent)))


@contextlib.contextmanager
def progress_to_stderr(env: dict[str, str]) -> Iterator[tuple[int, ...]]:
    """A fresh stage's stderr is a pipe, read when it ends, but its progress must be seen while it runs: the
    stage gets a copy of doit's own stderr as ``VITQ_PROGRESS_FD`` (vitq.progress writes there, a bar on a
    terminal, plain lines in a log), so nothing of it enters the pipe. Yields the descriptors to pass on;
    none where doit's stderr is no file (progress then goes to the pipe, before any error line)."""
    env.pop(PROGRESS_FD_VAR, None)
    fd = _dup(sys.stderr)
    if fd is None:
        yield ()
        return
    env[PROGRESS_FD_VAR] = str(fd)
    try:
        yield (fd,)
    finally:
        os.close(fd)


def _dup(stream) -> int | None:
    """A new descriptor for a stream of this process (flushed first); None where it has none (captured)."""
    try:
        stream.flush()
        return os.dup(stream.fileno())
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None


def user_error(stderr_lines: list[str]) -> str:
    """The stage's error: its last line, or a "<file>: N problems" header and the N lines after it."""
    for i in range(len(stderr_lines) - 1, -1, -1):
        found = PROBLEMS_HEADER.search(stderr_lines[i])
        if found and len(stderr_lines) - i - 1 == int(found.group(1)):
            return "\n".join(stderr_lines[i:])
    return stderr_lines[-1]


def die_with_parent() -> None:
    """Linux: a stage process dies with its parent (the doit process, or the server that dies with it), so a
    killed build leaves no orphan writing files."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
