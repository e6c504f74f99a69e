"""The cache's storage (vitq/orchestration/cache_store.py) on a folder, memory and moto's S3 server: blobs before records,
nothing overwritten, every fetched blob checked against its sha256. The stage side is in test_cache.py."""

from __future__ import annotations

import hashlib
import json
import posixpath
import uuid

import pytest

from vitq.errors import VitqError
from vitq.orchestration.cache_store import CacheFault, Store


@pytest.fixture(params=["folder", "memory", "s3"])
def store(request, tmp_path, monkeypatch) -> Store:
    if request.param == "folder":
        return Store(str(tmp_path / "cache"))
    if request.param == "memory":
        return Store(f"memory://store-{uuid.uuid4().hex[:10]}")
    server = request.getfixturevalue("s3_server")
    for name, value in server.env.items():
        monkeypatch.setenv(name, value)
    return Store(server.url(f"store-{uuid.uuid4().hex[:10]}"))


def blob(tmp_path, text: str):
    path = tmp_path / f"{text}.bin"
    path.write_bytes(text.encode())
    return hashlib.sha256(text.encode()).hexdigest(), path


def put(store: Store, key: str, data: bytes) -> None:
    """Write an object behind the store's back (a corrupt or foreign upload)."""
    store.fs.makedirs(posixpath.dirname(key), exist_ok=True)
    store.fs.pipe_file(key, data)


def test_a_published_record_is_never_overwritten_and_its_blobs_come_back_checked(store, tmp_path):
    key = "ab" * 32
    sha, path = blob(tmp_path, "weights")
    assert store.read_record(key) is None
    store.publish(key, {"n": 1}, {sha: path})
    store.publish(key, {"n": 2}, {sha: path})  # a later (or racing) build: the first record stays
    assert store.read_record(key) == {"n": 1}
    assert store.fs.cat_file(store.blob_key(sha)) == b"weights" and store.blob_key(sha).endswith(f"cas/{sha[:2]}/{sha}")
    out = tmp_path / "restored.bin"
    store.fetch([(sha, out)])
    assert out.read_bytes() == b"weights"


def test_a_wrong_or_missing_blob_and_a_garbled_record_are_faults(store, tmp_path):
    sha, path = blob(tmp_path, "good")
    store.publish("cd" * 32, {"n": 1}, {sha: path})
    other, _ = blob(tmp_path, "other")
    put(store, store.blob_key(other), b"not the bytes of its name")
    with pytest.raises(CacheFault, match="does not match its sha256"):
        store.fetch([(other, tmp_path / "x.bin")])
    with pytest.raises(CacheFault, match="missing blob"):
        store.fetch([("ee" * 32, tmp_path / "y.bin")])
    put(store, store.record_key("ef" * 32), b"{not json")
    with pytest.raises(CacheFault, match="not JSON"):
        store.read_record("ef" * 32)
    assert json.loads(store.fs.cat_file(store.record_key("cd" * 32))) == {"n": 1}


def test_a_url_no_installed_filesystem_handles_is_one_line_naming_the_variable():
    with pytest.raises(VitqError) as failed:
        Store("nosuchfs://bucket/x")
    assert str(failed.value).startswith("VITQ_CACHE=nosuchfs://bucket/x: ") and "\n" not in str(failed.value)
