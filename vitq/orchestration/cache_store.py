"""Records and blobs of the shared build cache under one fsspec URL (vitq.orchestration.cache says what they mean).

Nothing is ever overwritten: blobs go up before their record; on S3 each write is a conditional PUT
(``If-None-Match: *``), elsewhere a temporary key moved into place only while the key is still free, so a
reader never sees half an upload and two builds racing on one key both succeed.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import posixpath
import tempfile
import uuid
from pathlib import Path
from typing import Any

from vitq.errors import VitqError, one_line
from vitq.fileio import sha256_file

URL_VAR = "VITQ_CACHE"


class CacheFault(Exception):
    """The cache holds something unusable for one stage: warn, run the stage (the cache stays on)."""


class Store:
    """Records and blobs under one fsspec URL."""

    def __init__(self, url: str):
        import fsspec

        options: dict[str, Any] = {"skip_instance_cache": True}  # the endpoint comes from the environment
        if url.split("://", 1)[0] in ("s3", "s3a"):
            options["config_kwargs"] = {"connect_timeout": 5}  # a dead endpoint fails fast; the build goes on
        try:
            self.fs, self.root = fsspec.url_to_fs(url, **options)
        except (ImportError, ValueError) as exc:  # an unknown protocol, or its filesystem package is missing
            raise VitqError(one_line(f"{URL_VAR}={url}: {exc}")) from None
        self.url = url
        self.root = self.root.rstrip("/")
        # S3 (and S3-compatible stores) refuse a PUT with If-None-Match: * when the key exists: create-only.
        self.conditional = bool({"s3", "s3a"} & set(_protocols(self.fs)))
        self.broken: str | None = None  # set once it failed: the rest of this build goes without it

    @classmethod
    def open(cls, url: str) -> Store:
        """One store per URL and credentials for the life of the process (a doit build opens it per stage)."""
        return _open_store(url, tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_"))))

    def record_key(self, key: str) -> str:
        return f"{self.root}/ac/{key}.json"

    def blob_key(self, sha256: str) -> str:
        return f"{self.root}/cas/{sha256[:2]}/{sha256}"

    def read_record(self, key: str) -> Any | None:
        """The record stored under ``key`` as JSON data; None when there is none (a miss)."""
        try:
            data = self.fs.cat_file(self.record_key(key))
        except FileNotFoundError:
            return None
        try:
            return json.loads(data)
        except ValueError:
            raise CacheFault(f"malformed record ac/{key}.json (not JSON)") from None

    def fetch(self, blobs: list[tuple[str, Path]]) -> None:
        """Download each ``(sha256, local file)``, all at once where the storage allows; check every sha256."""
        results = _each(self.fs, "get_file", [(self.blob_key(sha), str(local)) for sha, local in blobs])
        for (sha, local), result in zip(blobs, results, strict=True):
            if isinstance(result, FileNotFoundError):
                raise CacheFault(f"record points at missing blob cas/{sha[:2]}/{sha}")
            if isinstance(result, BaseException):
                raise result
            if not local.is_file() or sha256_file(local) != sha:
                raise CacheFault(f"blob cas/{sha[:2]}/{sha} does not match its sha256")

    def publish(self, key: str, record: dict[str, Any], blobs: dict[str, Path]) -> None:
        """Blobs first, the record last, never overwriting: a record is only ever seen with all its blobs.
        Missing blobs are uploaded even when the record exists: a blob expired before its record is put back."""
        shas = sorted(blobs)
        present = _each(self.fs, "exists", [(self.blob_key(sha),) for sha in shas])
        self._put_new([(str(blobs[sha]), self.blob_key(sha)) for sha, there in zip(shas, present, strict=True)
                       if there is not True])
        if self.fs.exists(self.record_key(key)):  # another build got there first
            return
        with tempfile.TemporaryDirectory(prefix="vitq-cache-") as tmp:
            local = Path(tmp) / f"{key}.json"
            local.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")
            self._put_new([(str(local), self.record_key(key))])

    def _put_new(self, uploads: list[tuple[str, str]]) -> None:
        """Upload local files to keys that do not exist yet; one that appeared meanwhile is left as it is."""
        if self.conditional:
            results = _each(self.fs, "put_file", uploads, mode="create")
        else:
            results = [_outcome(self._put_via_temp, local, remote) for local, remote in uploads]
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, FileExistsError):
                raise result

    def _put_via_temp(self, local: str, remote: str) -> None:
        """Storage without conditional writes: a temporary key, moved into place if the key is still free
        (a rename on a local disk: the object never appears half-written). A racing build may move its
        own copy in at the same moment: the same bytes for a blob, an equally valid record."""
        temp = f"{remote}.tmp-{uuid.uuid4().hex}"
        self.fs.makedirs(posixpath.dirname(remote), exist_ok=True)
        try:
            self.fs.put_file(local, temp)
            if not self.fs.exists(remote):
                self.fs.mv(temp, remote)
        finally:
            if self.fs.exists(temp):
                self.fs.rm(temp)


@functools.cache
def _open_store(url: str, credentials: tuple[tuple[str, str], ...]) -> Store:
    return Store(url)


def _protocols(fs: Any) -> tuple[str, ...]:
    return (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)


def _each(fs: Any, method: str, calls: list[tuple], **kwargs: Any) -> list[Any]:
    """``fs.<method>(*args)`` for each call, results or exceptions in order. Concurrent on async filesystems:
    on S3 the few hundred sample images of a build are one round of requests, not hundreds."""
    if not calls:
        return []
    if getattr(fs, "async_impl", False):
        from fsspec.asyn import sync

        async def gather() -> list[Any]:
            coroutine = getattr(fs, f"_{method}")
            return await asyncio.gather(*(coroutine(*args, **kwargs) for args in calls), return_exceptions=True)

        return sync(fs.loop, gather)
    return [_outcome(getattr(fs, method), *args, **kwargs) for args in calls]


def _outcome(function: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return function(*args, **kwargs)
    except Exception as exc:
        return exc
