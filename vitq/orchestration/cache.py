"""The shared build cache (``VITQ_CACHE``): content-addressed action records on any fsspec storage.

Teams build the same recipes on many machines; doit's state is one local ``.doit.db``. As Bazel's remote
cache does, a stage's *action key* (sha256 over the stage name, its fingerprint: code, recipe fields, tool
versions, and the sha256 of each input file) names a record ``ac/<key>.json`` listing the files the stage
wrote (path, sha256, bytes) and its summary line; each file is stored once by content at
``cas/<2 hex>/<sha256>``. Runs in the doit process, before a stage process is spawned (no torch here,
fsspec is imported only when the cache is on), so a cached stage costs a download, not an interpreter.

Safety: blobs are uploaded before their record and nothing is ever overwritten (S3: conditional PUT;
elsewhere a temporary key moved into place only if the target is still absent), so a reader never sees
half an upload. A restored file is checked against its sha256 before it is renamed into place. Any fault
(a bad or missing blob, a malformed record, storage that cannot be reached) is one warning line and the
stage runs locally: the cache can make a build faster, never different.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import posixpath
import re
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vitq.errors import VitqError, one_line
from vitq.fileio import atomic_path, canonical, sha256_file
from vitq.layout import FOLDERS, ArtifactPaths
from vitq.orchestration.cache_store import URL_VAR, CacheFault, Store
from vitq.orchestration.fingerprint import stage_fingerprint
from vitq.orchestration.pipeline import Files, Stage, stage_named, stages_for
from vitq.orchestration.runner import StageRun, log_stage_run, stage_line
from vitq.recipe import Recipe

MODE_VAR = "VITQ_CACHE_MODE"
MODES = ("readwrite", "read", "write")
FORMAT = 1  # of keys and records: bumping it starts a new cache instead of misreading an old one
HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Settings:
    url: str
    mode: str

    @property
    def reads(self) -> bool:
        return self.mode in ("readwrite", "read")

    @property
    def writes(self) -> bool:
        return self.mode in ("readwrite", "write")


def settings(environ: dict[str, str] | None = None) -> Settings | None:
    """The cache the environment asks for, or None (unset: builds behave exactly as without a cache)."""
    environ = os.environ if environ is None else environ
    url = environ.get(URL_VAR, "").strip()
    if not url:
        return None
    mode = environ.get(MODE_VAR, "").strip() or "readwrite"
    if mode not in MODES:
        raise VitqError(one_line(f"{MODE_VAR}={mode!r}: expected read, write or readwrite"))
    return Settings(url, mode)


# ---------------------------------------------------------------- keys and records of stages


def _folder_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def tree_digest(files: Iterable[tuple[str, str]]) -> str:
    """One sha256 for a folder of ``(name, sha256)`` files: the sample set, whose labels.csv names the
    images beside it, which later stages read too."""
    return hashlib.sha256(canonical(sorted(files)).encode()).hexdigest()


def input_digest(name: str, path: Path) -> str:
    """sha256 of an input file; of the whole folder for the sample set."""
    if name in FOLDERS:
        return tree_digest((f.name, sha256_file(f)) for f in _folder_files(path.parent))
    return sha256_file(path)


def input_digests(stage: Stage, recipe: Recipe, paths: ArtifactPaths) -> dict[str, str] | None:
    """The sha256 of each input of the stage; None when one is missing (the stage will say so itself)."""
    inputs = stage.inputs(recipe, paths)
    if not all(path.is_file() for path in inputs.values()):
        return None
    return {name: input_digest(name, path) for name, path in inputs.items()}


def action_key(stage: Stage, recipe: Recipe, digests: dict[str, str]) -> str:
    """What the stage's outputs depend on: its name, its fingerprint and its inputs' bytes."""
    action = {"format": FORMAT, "stage": stage.name, "fingerprint": stage_fingerprint(stage, recipe),
              "inputs": digests}
    return hashlib.sha256(canonical(action).encode()).hexdigest()


def output_files(outputs: Files, root: Path) -> list[tuple[str, str, Path]]:
    """``(output, path in the build folder, file)`` of everything a stage wrote (the sample set: its folder)."""
    found = []
    for name, path in outputs.items():
        for file in _folder_files(path.parent) if name in FOLDERS else [path]:
            found.append((name, file.relative_to(root).as_posix(), file))
    return found


def checked_outputs(record: Any, key: str, outputs: Files, root: Path) -> list[dict[str, Any]]:
    """The record's output entries, if it is a record of this key naming exactly the stage's outputs (a
    record is untrusted input: no path outside the build folder, no file the stage does not write)."""

    def fault(why: str) -> CacheFault:
        return CacheFault(f"malformed record ac/{key}.json ({why})")

    if not isinstance(record, dict) or record.get("format") != FORMAT or record.get("key") != key:
        raise fault("not a record of this key")
    entries = record.get("outputs")
    if not isinstance(record.get("summary"), str) or not isinstance(entries, list):
        raise fault("no summary or no outputs")
    wanted = {name: path.relative_to(root).as_posix() for name, path in outputs.items()}
    seen: set[str] = set()
    for entry in entries:
        if not (isinstance(entry, dict) and isinstance(entry.get("path"), str) and type(entry.get("bytes")) is int
                and isinstance(entry.get("sha256"), str) and HEX64.fullmatch(entry["sha256"])):
            raise fault("an output entry lacks its path, sha256 or bytes")
        name, path = entry.get("output"), entry["path"]
        if name in FOLDERS and name in wanted:
            folder, _, file = path.partition("/")
            fits = folder == posixpath.dirname(wanted[name]) and file and "/" not in file and file[0] != "."
        else:
            fits = wanted.get(name) == path
        if not fits or path in seen:
            raise fault(f"unexpected output {one_line(path)!r}")
        seen.add(path)
    if missing := set(wanted.values()) - seen:
        raise fault(f"{sorted(missing)[0]} is not listed")
    return entries


# ---------------------------------------------------------------- a stage against the cache (the doit side)


class StageCache:
    """One stage of one recipe against the shared cache: ``restore`` before running it, ``store_outputs``
    after it ran."""

    def __init__(self, config: Settings, store: Store, stage: Stage, recipe: Recipe, paths: ArtifactPaths):
        self.config, self.store, self.stage, self.recipe, self.paths = config, store, stage, recipe, paths
        self.writes = config.writes

    @functools.cached_property
    def key(self) -> str | None:
        digests = input_digests(self.stage, self.recipe, self.paths)
        return None if digests is None else action_key(self.stage, self.recipe, digests)

    def restore(self) -> bool:
        """True: the outputs came from the cache and are in place (a hit). False: run the stage."""
        if not self.config.reads or self.store.broken:
            return False
        started = time.perf_counter()
        try:
            if self.key is None or (record := self.store.read_record(self.key)) is None:
                return False
            outputs = self.stage.outputs(self.recipe, self.paths)
            self._download(checked_outputs(record, self.key, outputs, self.paths.root), outputs)
        except Exception as exc:  # whatever went wrong, the stage can still run here
            self._fault(exc)
            return False
        seconds = time.perf_counter() - started
        printed = record.get("stdout") if isinstance(record.get("stdout"), str) else ""
        sys.stdout.write("".join(f"{one_line(line)}\n" for line in printed.splitlines()))  # no terminal escapes
        line = stage_line(self.recipe.name, self.stage.name, record["summary"], f"cache hit, {seconds:.1f}s")
        print(one_line(line), flush=True)
        log_stage_run(self.paths, self.recipe.name, self.stage.name, seconds, cache="hit")
        return True

    def store_outputs(self, run: StageRun, printed: str) -> None:
        """After the stage ran: offer what it wrote to the cache, with its summary and what else it printed (a
        fault is one warning; the build is done)."""
        if not self.writes or self.store.broken:
            return
        try:
            if self.key is None:
                return
            files = output_files(self.stage.outputs(self.recipe, self.paths), self.paths.root)
            entries = [{"output": name, "path": path, "sha256": sha256_file(file), "bytes": file.stat().st_size}
                       for name, path, file in files]
            record = {"format": FORMAT, "key": self.key, "stage": self.stage.name, "summary": run.summary,
                      "stdout": printed, "outputs": entries}
            self.store.publish(self.key, record, {e["sha256"]: file for e, (_, _, file) in zip(entries, files, strict=True)})
        except Exception as exc:  # the stage succeeded; the cache only misses an entry
            self._fault(exc)

    def _download(self, entries: list[dict[str, Any]], outputs: Files) -> None:
        """Each output into a temporary file beside its target, sha256 checked, then all renamed into place."""
        with contextlib.ExitStack() as stack:
            temps: dict[str, Path] = {}
            for name, path in outputs.items():
                if name in FOLDERS:  # the whole folder, swapped in at once as the samples stage does
                    folder = stack.enter_context(atomic_path(path.parent))
                    folder.mkdir()
                    temps.update({e["path"]: folder / e["path"].split("/", 1)[1] for e in entries if e["output"] == name})
                else:
                    temps[path.relative_to(self.paths.root).as_posix()] = stack.enter_context(atomic_path(path))
            self.store.fetch([(e["sha256"], temps[e["path"]]) for e in entries])

    def _fault(self, exc: Exception) -> None:
        where = f"{self.recipe.name}:{self.stage.name}"
        if isinstance(exc, CacheFault):
            warn(f"{where}: {exc}; running the stage")
            return
        self.store.broken = f"{type(exc).__name__}: {exc}"
        warn(f"{where}: {URL_VAR}={self.store.url} failed ({self.store.broken[:300]}); "
             "building without the cache from here on")

def warn(message: str) -> None:
    print(one_line(f"vitq cache: warning: {message}"), file=sys.stderr, flush=True)


def stage_cache(stage_name: str, recipe: Recipe, artifacts_root: str) -> StageCache | None:
    """The cache for one stage task, or None when ``VITQ_CACHE`` is unset (or failed earlier in this build).
    A bad setting is a VitqError: one line, the build stops."""
    config = settings()
    if config is None:
        return None
    store = Store.open(config.url)
    if store.broken:
        return None
    return StageCache(config, store, stage_named(stage_name), recipe,
                      ArtifactPaths.for_recipe(Path(artifacts_root), recipe.name))


# ---------------------------------------------------------------- what a build would do (vitq cache status)


@dataclass(frozen=True)
class Verdict:
    stage: str
    key: str | None
    state: str  # "hit", "miss", "miss (...)" or "unknown (...)"


def status(recipe: Recipe, paths: ArtifactPaths, store: Store) -> list[Verdict]:
    """Per stage, whether a build in ``paths`` would find it in the cache, without building. An input that is
    not here yet is taken from the record of the upstream stage that would restore it; after a miss
    upstream, what follows is unknown."""
    restored: dict[Path, str] = {}  # digest of each file a hit upstream would restore
    missed: dict[Path, str] = {}  # files only a stage that must run would write, and which stage
    verdicts = []
    for stage in stages_for(recipe):
        outputs = stage.outputs(recipe, paths)
        digests: dict[str, str] = {}
        unknown = None
        for name, path in stage.inputs(recipe, paths).items():
            if path.is_file():
                digests[name] = input_digest(name, path)
            elif path in restored:
                digests[name] = restored[path]
            else:
                unknown = f"needs {missed[path]}" if path in missed else f"missing {path}"
                break
        key = None if unknown else action_key(stage, recipe, digests)
        state = f"unknown ({unknown})" if unknown else "miss"
        if key is not None:
            try:
                record = store.read_record(key)
                if record is not None:
                    entries = checked_outputs(record, key, outputs, paths.root)
                    restored.update(_recorded_digests(entries, outputs))
                    state = "hit"
            except CacheFault as exc:
                state = f"miss ({exc})"
            except Exception as exc:
                raise VitqError(one_line(f"{URL_VAR}={store.url}: cannot read the cache "
                                         f"({type(exc).__name__}: {exc})")) from None
        if state != "hit":
            missed.update({path: stage.name for path in outputs.values()})
        verdicts.append(Verdict(stage.name, key, state))
    return verdicts


def _recorded_digests(entries: list[dict[str, Any]], outputs: Files) -> dict[Path, str]:
    """The input digest each output of a hit record will have once restored."""
    digests = {}
    for name, path in outputs.items():
        mine = [e for e in entries if e["output"] == name]
        if name in FOLDERS:
            digests[path] = tree_digest((e["path"].split("/", 1)[1], e["sha256"]) for e in mine)
        else:
            digests[path] = mine[0]["sha256"]
    return digests
