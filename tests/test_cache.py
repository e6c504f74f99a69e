"""The shared build cache (vitq/orchestration/cache.py) on real storage: moto's S3 server on 127.0.0.1 through s3fs, a
local folder, memory://. Unit tests call the cache on small stand-in files of a recipe's stages (no torch);
one e2e test builds a recipe with doit twice, the second time in a fresh output root, from the cache."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
from s3_server import free_port

from vitq.errors import VitqError
from vitq.fileio import sha256_file
from vitq.layout import SAMPLES, ArtifactPaths
from vitq.orchestration import actions, cache
from vitq.orchestration.cache import Store, checked_outputs, settings, stage_cache, status
from vitq.orchestration.pipeline import stage_named
from vitq.orchestration.runner import StageRun
from vitq.orchestration.stage_process import StageResult
from vitq.recipe import load_recipe

from conftest import REPO, quick_digits, run_doit, tasks_ran, write_recipe
from helpers_models import TINY_TIMM, make_images

CHAIN = ("samples", "fp32", "int8", "optimized", "lite")  # samples is a folder; lite reads it and int8's child


@pytest.fixture
def recipe(tmp_path):
    return load_recipe(quick_digits(tmp_path / "recipes"))


@pytest.fixture
def s3(s3_server, monkeypatch) -> str:
    """VITQ_CACHE on a fresh prefix of the moto server's bucket, reached through the standard AWS variables."""
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    url = s3_server.url(f"t-{uuid.uuid4().hex[:10]}")
    monkeypatch.setenv("VITQ_CACHE", url)
    monkeypatch.delenv("VITQ_CACHE_MODE", raising=False)
    return url


@pytest.fixture
def memory(monkeypatch) -> str:
    url = f"memory://vitq-test-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("VITQ_CACHE", url)
    monkeypatch.delenv("VITQ_CACHE_MODE", raising=False)
    return url


def root_of(tmp_path: Path, name: str) -> Path:
    return tmp_path / name


def paths_in(root: Path, recipe) -> ArtifactPaths:
    return ArtifactPaths.for_recipe(root, recipe.name)


def fake_outputs(stage: str, recipe, root: Path, salt: str = "") -> None:
    """Stand-ins for what the stage writes: small files, the sample set as a folder of images + labels.csv."""
    paths = paths_in(root, recipe)
    for name, path in stage_named(stage).outputs(recipe, paths).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if name == SAMPLES:
            for image in ("digit-0001.png", "digit-0002.png", "digit-0003.png"):
                (path.parent / image).write_bytes(f"png {image[6:10]}{salt}".encode() if image != "digit-0003.png"
                                                  else b"png 0001")  # same bytes as 0001: one blob
            path.write_text("file,label\ndigit-0001.png,1\ndigit-0002.png,2\ndigit-0003.png,1\n")
        else:
            path.write_bytes(f"{stage}:{name}:{salt}".encode() * 100)


def ran(stage: str, summary: str | None = None) -> StageRun:
    """What a stage run hands back (vitq.orchestration.runner.StageRun)."""
    return StageRun(summary or f"{stage} done -> x", 1.5, 321.0)


def build(stage: str, recipe, root: Path, salt: str = "", printed: str = "") -> cache.StageCache:
    """A stage that ran (stand-in outputs) and offered them to the cache, as vitq.orchestration.actions.run_stage does."""
    fake_outputs(stage, recipe, root, salt)
    cached = stage_cache(stage, recipe, str(root))
    cached.store_outputs(ran(stage), printed)
    return cached


def files_of(build_dir: Path) -> dict[str, str]:
    return {p.relative_to(build_dir).as_posix(): sha256_file(p) for p in sorted(build_dir.rglob("*"))
            if p.is_file() and p.name != "build-log.jsonl"}


def warnings_in(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("vitq cache: warning:")]


# ---------------------------------------------------------------- settings


def test_unset_means_no_cache_and_a_bad_mode_names_the_variable():
    assert settings({}) is None and settings({"VITQ_CACHE": " "}) is None
    assert settings({"VITQ_CACHE": "s3://b/p"}).mode == "readwrite"
    read = settings({"VITQ_CACHE": "s3://b/p", "VITQ_CACHE_MODE": "read"})
    assert read.reads and not read.writes
    with pytest.raises(VitqError, match=r"^VITQ_CACHE_MODE='sometimes': expected read, write or readwrite$"):
        settings({"VITQ_CACHE": "s3://b/p", "VITQ_CACHE_MODE": "sometimes"})


@pytest.mark.parametrize(("environ", "named"), [
    ({"VITQ_CACHE": "memory://x", "VITQ_CACHE_MODE": "rw"}, "VITQ_CACHE_MODE='rw'"),
    ({"VITQ_CACHE": "nosuchfs://bucket/x"}, "VITQ_CACHE=nosuchfs://bucket/x"),
    ({"VITQ_CACHE": "gcs://bucket/x"}, "VITQ_CACHE=gcs://bucket/x: Please install gcsfs"),  # package missing
])
def test_bad_settings_fail_the_stage_task_with_one_line(environ, named, recipe, tmp_path, monkeypatch):
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(actions.stage_process, "run", _no_stage_process)
    failed = actions.run_stage("fp32", recipe.source, str(tmp_path / "out"))
    assert failed.message.startswith(named) and "\n" not in failed.message, failed.message


def test_vitq_cache_status_without_the_variable_or_with_a_bad_mode_is_one_line(recipe, monkeypatch, capsys):
    from vitq.cli import main

    monkeypatch.delenv("VITQ_CACHE", raising=False)
    assert main(["cache", "status", recipe.source]) == 2
    assert capsys.readouterr().err == "vitq: VITQ_CACHE is not set: name the cache, e.g. VITQ_CACHE=s3://bucket/prefix\n"
    monkeypatch.setenv("VITQ_CACHE", "memory://x")
    monkeypatch.setenv("VITQ_CACHE_MODE", "often")
    assert main(["cache", "status", recipe.source]) == 2
    assert capsys.readouterr().err.count("\n") == 1


# ---------------------------------------------------------------- keys and records


def test_the_action_key_covers_stage_fingerprint_and_input_bytes_and_nothing_else(tmp_path):
    base = load_recipe(quick_digits(tmp_path / "r1"))
    unread = load_recipe(quick_digits(tmp_path / "r2", extra="checks: {min_agreement: 0.5}\n"))  # int8 ignores it
    edited = load_recipe(quick_digits(tmp_path / "r3", extra="quantize: {engine: x86}\n"))  # int8 reads quantize

    def key(stage, recipe, root):
        return cache.action_key(stage_named(stage), recipe,
                                cache.input_digests(stage_named(stage), recipe, paths_in(root, recipe)))

    for recipe, root in ((base, tmp_path / "a"), (unread, tmp_path / "b"), (edited, tmp_path / "c")):
        fake_outputs("fp32", recipe, root)
        fake_outputs("samples", recipe, root)
        fake_outputs("optimized", recipe, root)
    assert key("int8", base, tmp_path / "a") == key("int8", unread, tmp_path / "b")  # another folder, same key
    assert key("int8", base, tmp_path / "a") != key("int8", edited, tmp_path / "c")
    assert key("int8", base, tmp_path / "a") != key("onnx_fp32", base, tmp_path / "a")  # the same input
    before = key("lite", base, tmp_path / "a")
    (tmp_path / "a" / "quick" / "samples" / "digit-0002.png").write_bytes(b"another image")  # labels.csv unchanged
    assert key("lite", base, tmp_path / "a") != before
    fake_outputs("fp32", base, tmp_path / "a", salt="retrained")
    assert key("int8", base, tmp_path / "a") != key("int8", unread, tmp_path / "b")
    assert cache.input_digests(stage_named("int8"), base, paths_in(tmp_path / "empty", base)) is None


def test_a_record_lists_each_output_and_the_summary_and_blobs_are_stored_once_by_content(memory, recipe, tmp_path):
    table = "| variant | top-1 |\n| fp32 | 0.9 |\n"
    cached = build("samples", recipe, tmp_path / "a", printed=table)
    store = Store.open(memory)
    record = json.loads(store.fs.cat_file(store.record_key(cached.key)))
    assert record["key"] == cached.key and record["stage"] == "samples" and record["format"] == cache.FORMAT
    assert record["summary"] == "samples done -> x" and record["stdout"] == table
    folder = tmp_path / "a" / "quick" / "samples"
    assert record["outputs"] == [{"output": "samples", "path": f"samples/{p.name}", "sha256": sha256_file(p),
                                  "bytes": p.stat().st_size} for p in sorted(folder.iterdir())]
    blobs = sorted(store.fs.find(f"{store.root}/cas"))
    shas = sorted({sha256_file(p) for p in folder.iterdir()})
    assert len(shas) == 3 < len(record["outputs"])  # two images share their bytes: one blob
    assert blobs == [store.blob_key(sha) for sha in shas]
    assert all(b.split("/")[-2] == b.split("/")[-1][:2] for b in blobs)


@pytest.mark.parametrize("where", ["s3", "folder", "file_url", "memory"])
def test_a_fresh_output_root_is_restored_from_the_cache_byte_for_byte(where, recipe, tmp_path, monkeypatch, capsys,
                                                                       request):
    if where == "s3":
        url = request.getfixturevalue("s3")
    elif where == "memory":
        url = request.getfixturevalue("memory")
    else:
        url = str(tmp_path / "cache") if where == "folder" else (tmp_path / "cache").as_uri()
        monkeypatch.setenv("VITQ_CACHE", url)
    for stage in CHAIN:  # each stage's key depends on what the one before it wrote
        build(stage, recipe, tmp_path / "a", printed="| table |\n" if stage == "lite" else "")
    capsys.readouterr()
    for stage in CHAIN:
        assert stage_cache(stage, recipe, str(tmp_path / "b")).restore()
    out = capsys.readouterr()
    assert files_of(tmp_path / "b" / "quick") == files_of(tmp_path / "a" / "quick")
    hits = re.findall(r"^  quick:(\S+) +(\S+) done -> x  \[cache hit, [0-9.]+s\]$", out.out, re.M)
    assert hits == [(s, s) for s in CHAIN] and "| table |\n" in out.out and out.err == ""
    log = [json.loads(line) for line in (tmp_path / "b" / "quick" / "build-log.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["cache"]) for r in log] == [(s, "hit") for s in CHAIN]
    assert not list((tmp_path / "b" / "quick").glob(".tmp-*"))
    if where == "folder":
        assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["ac", "cas"]
        assert not list((tmp_path / "cache").rglob("*.tmp-*"))


def test_a_cache_hit_spawns_no_stage_process_and_a_miss_uploads_after_the_stage_ran(memory, recipe, tmp_path,
                                                                                  monkeypatch):
    build("samples", recipe, tmp_path / "a")
    monkeypatch.setattr(actions.stage_process, "run", _no_stage_process)
    assert actions.run_stage("samples", recipe.source, str(tmp_path / "b")) is True
    assert files_of(tmp_path / "b" / "quick") == files_of(tmp_path / "a" / "quick")

    def stage_process(*args, keep_stdout=False):  # what a stage process would do: write the outputs, hand back its run
        assert list(args) == ["fp32", recipe, str(tmp_path / "b")] and keep_stdout
        fake_outputs("fp32", recipe, tmp_path / "b")
        return StageResult(0, run=ran("fp32"))

    monkeypatch.setattr(actions.stage_process, "run", stage_process)
    assert actions.run_stage("fp32", recipe.source, str(tmp_path / "b")) is True
    monkeypatch.setattr(actions.stage_process, "run", _no_stage_process)
    assert actions.run_stage("fp32", recipe.source, str(tmp_path / "c")) is True
    assert files_of(tmp_path / "c" / "quick") == {"fp32.safetensors": sha256_file(tmp_path / "b" / "quick" / "fp32.safetensors")}


def _no_stage_process(*args, **kwargs):
    raise AssertionError("a stage process was spawned")


# ---------------------------------------------------------------- faults: one warning, the stage runs locally


def _corrupt_blob(store, record, s3):
    s3.client().put_object(Bucket=s3.bucket, Key=_key(store.blob_key(record["outputs"][1]["sha256"])), Body=b"bad")


def _drop_blob(store, record, s3):
    s3.client().delete_object(Bucket=s3.bucket, Key=_key(store.blob_key(record["outputs"][0]["sha256"])))


def _garble_record(store, record, s3):
    s3.client().put_object(Bucket=s3.bucket, Key=_key(store.record_key(record["key"])), Body=b"{not json")


def _escape_record(store, record, s3):
    record["outputs"][0]["path"] = "samples/../../../outside.png"
    s3.client().put_object(Bucket=s3.bucket, Key=_key(store.record_key(record["key"])), Body=json.dumps(record))


def _foreign_record(store, record, s3):
    s3.client().put_object(Bucket=s3.bucket, Key=_key(store.record_key(record["key"])),
                           Body=json.dumps({**record, "key": "0" * 64}))


def _key(path: str) -> str:
    return path.split("/", 1)[1]  # bucket/key -> key


@pytest.mark.parametrize(("fault", "said"), [
    (_corrupt_blob, r"blob cas/[0-9a-f]{2}/[0-9a-f]{64} does not match its sha256"),
    (_drop_blob, r"record points at missing blob cas/[0-9a-f]{2}/[0-9a-f]{64}"),
    (_garble_record, r"malformed record ac/[0-9a-f]{64}\.json \(not JSON\)"),
    (_escape_record, r"malformed record ac/[0-9a-f]{64}\.json \(unexpected output 'samples/\.\./\.\./\.\./outside\.png'\)"),
    (_foreign_record, r"malformed record ac/[0-9a-f]{64}\.json \(not a record of this key\)"),
])
def test_a_bad_cache_entry_is_one_warning_and_nothing_is_written(fault, said, s3, s3_server, recipe, tmp_path,
                                                                 capsys):
    cached = build("samples", recipe, tmp_path / "a")
    store = Store.open(s3)
    fault(store, json.loads(store.fs.cat_file(store.record_key(cached.key))), s3_server)
    previous = tmp_path / "b" / "quick" / "samples"
    previous.mkdir(parents=True)
    (previous / "labels.csv").write_text("an older sample set\n")
    capsys.readouterr()
    assert stage_cache("samples", recipe, str(tmp_path / "b")).restore() is False  # vitq runs the stage
    err = capsys.readouterr().err
    assert re.fullmatch(rf"vitq cache: warning: quick:samples: {said}; running the stage\n", err), err
    assert sorted(p.name for p in (tmp_path / "b").rglob("*")) == ["labels.csv", "quick", "samples"]
    assert (previous / "labels.csv").read_text() == "an older sample set\n"
    assert not (tmp_path / "outside.png").exists()
    assert stage_cache("fp32", recipe, str(tmp_path / "b")) is not None  # the cache stays on


def test_a_blob_expired_before_its_record_is_put_back_by_the_stage_that_ran_instead(memory, recipe, tmp_path,
                                                                                    capsys):
    cached = build("fp32", recipe, tmp_path / "a")
    store = Store.open(memory)
    store.fs.rm(store.blob_key(sha256_file(tmp_path / "a" / "quick" / "fp32.safetensors")))  # a lifecycle rule
    assert stage_cache("fp32", recipe, str(tmp_path / "b")).restore() is False
    assert "record points at missing blob" in capsys.readouterr().err
    rerun = build("fp32", recipe, tmp_path / "b")  # the stage ran here: the same bytes
    assert rerun.key == cached.key
    assert stage_cache("fp32", recipe, str(tmp_path / "c")).restore()
    assert capsys.readouterr().err == ""

def test_an_unreachable_endpoint_is_one_warning_and_the_build_goes_on_without_the_cache(recipe, tmp_path,
                                                                                       monkeypatch, capsys):
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # the standard variable; the default retries take ~8 s
    for name, value in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1",
                        "VITQ_CACHE": f"s3://vitq-cache/{uuid.uuid4().hex}"}.items():
        monkeypatch.setenv(name, value)
    first = stage_cache("samples", recipe, str(tmp_path / "b"))
    assert first.restore() is False
    fake_outputs("samples", recipe, tmp_path / "b")
    first.store_outputs(ran("samples"), "")  # no second warning
    assert stage_cache("fp32", recipe, str(tmp_path / "b")) is None  # off for the rest of the build
    (line,) = warnings_in(capsys.readouterr().err)
    assert line.startswith("vitq cache: warning: quick:samples: VITQ_CACHE=s3://vitq-cache/")
    assert "EndpointConnectionError" in line and line.endswith("building without the cache from here on")
    from vitq.cli import main

    assert main(["cache", "status", recipe.source]) == 2  # vitq cache status: one line, no traceback
    err = capsys.readouterr().err
    assert err.startswith("vitq: VITQ_CACHE=s3://vitq-cache/") and "cannot read the cache" in err and err.count("\n") == 1


# ---------------------------------------------------------------- modes and races


def test_read_mode_pulls_but_never_writes_and_write_mode_never_pulls(s3, s3_server, recipe, tmp_path, monkeypatch,
                                                                     capsys):
    build("samples", recipe, tmp_path / "a")
    prefix = _key(Store.open(s3).root)

    def objects():
        listing = s3_server.client().list_objects_v2(Bucket=s3_server.bucket, Prefix=prefix + "/")
        return sorted(o["Key"] for o in listing.get("Contents", []))

    stored = objects()
    monkeypatch.setenv("VITQ_CACHE_MODE", "read")
    assert stage_cache("samples", recipe, str(tmp_path / "b")).restore()
    reader = build("fp32", recipe, tmp_path / "b")
    assert not reader.writes and objects() == stored
    monkeypatch.setenv("VITQ_CACHE_MODE", "write")
    assert stage_cache("samples", recipe, str(tmp_path / "c")).restore() is False
    assert not (tmp_path / "c" / "quick" / "samples").exists()
    build("fp32", recipe, tmp_path / "c")
    assert len(objects()) == len(stored) + 2  # fp32's record and blob
    assert warnings_in(capsys.readouterr().err) == []


@pytest.mark.parametrize("where", ["s3", "folder"])
def test_two_builds_racing_to_upload_the_same_key_leave_one_valid_record(where, recipe, tmp_path, monkeypatch,
                                                                          capsys, request):
    url = request.getfixturevalue("s3") if where == "s3" else str(tmp_path / "cache")
    monkeypatch.setenv("VITQ_CACHE", url)
    for run in ("a", "b"):
        fake_outputs("samples", recipe, tmp_path / run)
    racers = []
    for run in ("a", "b"):  # two builds: their own storage connection each, as two CI machines
        cached = stage_cache("samples", recipe, str(tmp_path / run))
        cached.store = Store(url)
        racers.append(cached)
    start = threading.Barrier(2)

    def upload(cached):
        start.wait()
        cached.store_outputs(ran("samples"), "")

    threads = [threading.Thread(target=upload, args=(c,)) for c in racers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert capsys.readouterr().err == ""
    assert racers[0].key == racers[1].key
    store = Store(url)
    record = json.loads(store.fs.cat_file(store.record_key(racers[0].key)))
    outputs = stage_named("samples").outputs(recipe, paths_in(tmp_path / "c", recipe))
    assert len(checked_outputs(record, racers[0].key, outputs, tmp_path / "c" / "quick")) == 4
    assert stage_cache("samples", recipe, str(tmp_path / "c")).restore()
    assert files_of(tmp_path / "c" / "quick") == files_of(tmp_path / "a" / "quick")
    # a later upload of the same key leaves the record as it is, and so does the write that lost a race
    racers[1].store_outputs(ran("samples", "again"), "")
    (tmp_path / "other.json").write_text("{}")
    store._put_new([(str(tmp_path / "other.json"), store.record_key(racers[0].key))])  # past its exists() check
    assert json.loads(store.fs.cat_file(store.record_key(racers[0].key))) == record
    if where == "folder":
        assert not list((tmp_path / "cache").rglob("*.tmp-*"))


# ---------------------------------------------------------------- vitq cache status


def test_status_says_hit_miss_or_which_upstream_stage_it_needs_without_building(memory, recipe, tmp_path,
                                                                                monkeypatch, capsys):
    from vitq.cli import main

    for stage in ("samples", "fp32"):
        build(stage, recipe, tmp_path / "a")
    fresh = paths_in(tmp_path / "b", recipe)
    states = {v.stage: v.state for v in status(recipe, fresh, Store.open(memory))}
    assert {s: states[s] for s in ("samples", "fp32", "int8", "optimized", "lite", "onnx_fp32", "eval")} == {
        "samples": "hit", "fp32": "hit", "int8": "miss", "optimized": "unknown (needs int8)",
        "lite": "unknown (needs optimized)", "onnx_fp32": "miss", "eval": "unknown (needs int8)"}
    assert not fresh.root.exists()
    build("int8", recipe, tmp_path / "a")
    build("optimized", recipe, tmp_path / "a", salt="another machine's bytes")
    states = {v.stage: v.state for v in status(recipe, fresh, Store.open(memory))}
    assert states["int8"] == "hit" and states["optimized"] == "hit" and states["lite"] == "miss"
    monkeypatch.setenv("VITQ_ARTIFACTS", str(tmp_path / "b"))
    assert main(["cache", "status", recipe.source]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"quick: VITQ_CACHE={memory} (mode readwrite), builds in {fresh.root}\n")
    assert re.search(r"^  int8       [0-9a-f]{12}  hit$", out, re.M) and "  lite" in out


# ---------------------------------------------------------------- end to end


@pytest.mark.e2e
def test_doit_rebuilds_a_fresh_output_root_from_the_s3_cache_with_identical_bytes(s3_server, tmp_path, monkeypatch):
    """Build A fills the cache; build B (a fresh output root) restores every stage without running one; the
    status says so beforehand; build C meets a corrupt blob: one warning, that stage runs, same bytes.
    The tiny random-weights recipe of built_tiny (a user's sample folder, no training, no .pte): the
    cheapest real chain, about 30 s cold on 2 cores (quick_digits' training alone takes 40 s or more)."""
    recipes = tmp_path / "recipes"
    make_images(recipes / "images")
    write_recipe(recipes, "tiny", TINY_TIMM.format(extra="executorch: {enabled: false}\n"))
    url = s3_server.url("e2e")
    for name, value in {**s3_server.env, "VITQ_CACHE": url}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("VITQ_CACHE_MODE", raising=False)

    first = run_doit("build:tiny", recipes=recipes, artifacts=tmp_path / "a")
    stages = sorted({t.split(":")[0] for t in tasks_ran(first)} - {"build"}, key=_order)
    assert {"samples", "fp32", "int8", "lite", "eval", "manifest"} <= set(stages)

    check = subprocess.run([sys.executable, "-m", "vitq.cli", "cache", "status", "tiny"], cwd=REPO,
                           env={**os.environ, "VITQ_RECIPES": str(recipes), "VITQ_ARTIFACTS": str(tmp_path / "b")},
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert re.findall(r"^  (\S+) +[0-9a-f]{12}  hit$", check.stdout, re.M) == stages, check.stdout

    second = run_doit("build:tiny", recipes=recipes, artifacts=tmp_path / "b")
    hits = re.findall(r"^  tiny:(\S+) .*\[cache hit, [0-9.]+s\]$", second.stdout, re.M)
    assert hits == stages and "peak" not in second.stdout, second.stdout  # no stage process ran
    table = [line for line in first.stdout.splitlines() if line.startswith("|")]
    assert table and all(line in second.stdout.splitlines() for line in table)  # the report table, replayed
    assert files_of(tmp_path / "b" / "tiny") == files_of(tmp_path / "a" / "tiny")
    again = run_doit("build:tiny", recipes=recipes, artifacts=tmp_path / "b")
    assert tasks_ran(again) <= {"build:tiny"}  # doit recorded the restored files as its targets

    int8 = sha256_file(tmp_path / "a" / "tiny" / "int8.pt")
    s3_server.client().put_object(Bucket=s3_server.bucket, Key=f"e2e/cas/{int8[:2]}/{int8}", Body=b"tampered")
    third = run_doit("build:tiny", recipes=recipes, artifacts=tmp_path / "c")
    assert len(warnings_in(third.stderr)) == 1 and "does not match its sha256" in third.stderr, third.stderr
    assert re.search(r"^  tiny:int8 .*peak \d+ MB\]$", third.stdout, re.M)  # ran here: the same bytes, so
    assert len(re.findall(r"\[cache hit", third.stdout)) == len(stages) - 1  # every later stage still hits
    assert files_of(tmp_path / "c" / "tiny") == files_of(tmp_path / "a" / "tiny")

def _order(stage: str) -> int:
    from vitq.orchestration.pipeline import STAGES

    return [s.name for s in STAGES].index(stage)

