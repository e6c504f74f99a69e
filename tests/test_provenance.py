"""Every release carries provenance.intoto.json: an in-toto Statement v1 with a SLSA provenance v1
predicate about exactly its files, validated with the in-toto attestation framework's bindings."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import tarfile

import pytest

from vitq.fileio import json_text, sha256_file
from vitq.ship import provenance
from vitq.ship.release import make_release
from vitq.ship.verify import SUMS, verify, verify_target


@pytest.fixture
def release(tiny_build, tmp_path, monkeypatch):
    """The tiny build's release tarball, and the release unpacked (as a user downloads and unpacks it)."""
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    monkeypatch.delenv(provenance.BUILDER_ENV, raising=False)
    tarball = make_release(tiny_build.root, tmp_path / "rel")
    with tarfile.open(tarball) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    return tarball, tmp_path / "unpacked" / "tiny-0.0.0"


def statement_of(unpacked):
    return json.loads((unpacked / provenance.FILE).read_text())


def test_a_release_states_every_file_recipe_weights_tools_and_builder(release, tiny_build):
    _, unpacked = release
    data = statement_of(unpacked)
    assert provenance.problems(data) == []
    subjects = {s["name"]: s["digest"]["sha256"] for s in data["subject"]}
    shipped = {p.relative_to(unpacked).as_posix() for p in unpacked.rglob("*") if p.is_file()}
    assert set(subjects) == shipped - {provenance.FILE, SUMS}
    assert all(sha256_file(unpacked / name) == digest for name, digest in subjects.items())
    manifest = json.loads((unpacked / "manifest.json").read_text())
    definition = data["predicate"]["buildDefinition"]
    assert definition["externalParameters"]["recipe"]["sha256"] == manifest["recipe"]["sha256"]
    assert definition["externalParameters"]["recipe"]["resolved"] == manifest["recipe"]["resolved"]
    [weights] = [d for d in definition["resolvedDependencies"] if d.get("name") == "weights"]
    assert weights["uri"] == "urn:vitq:random-init:seed-7"
    assert weights["digest"]["sha256"] == subjects["fp32.safetensors"]  # no weights file: the float weights built
    assert f"pkg:pypi/torch@{manifest['versions']['torch']}" in {d.get("uri") for d in definition["resolvedDependencies"]}
    assert data["predicate"]["runDetails"]["builder"] == {"id": provenance.DEFAULT_BUILDER,
                                                          "version": {"vitq": manifest["versions"]["vitq"]}}
    assert "metadata" not in data["predicate"]["runDetails"]  # no clock without SOURCE_DATE_EPOCH
    assert str(tiny_build.root) not in (unpacked / provenance.FILE).read_text()


def test_sha256sum_checks_the_unpacked_release_provenance_included(release):
    _, unpacked = release
    assert provenance.FILE in (unpacked / SUMS).read_text()
    proc = subprocess.run(["sha256sum", "-c", "--strict", SUMS], cwd=unpacked, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_source_date_epoch_is_the_only_clock_and_the_builder_can_name_itself(tiny_build, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")
    monkeypatch.setenv(provenance.BUILDER_ENV, "https://github.com/acme/vitq/.github/workflows/release.yml@refs/tags/v1")
    one = make_release(tiny_build.root, tmp_path / "one")
    two = make_release(tiny_build.root, tmp_path / "two")
    assert sha256_file(one) == sha256_file(two)
    with tarfile.open(one) as tar:
        data = json.load(tar.extractfile(f"tiny-0.0.0/{provenance.FILE}"))
    assert data["predicate"]["runDetails"]["metadata"] == {"startedOn": "2026-01-01T00:00:00Z",
                                                           "finishedOn": "2026-01-01T00:00:00Z"}
    assert data["predicate"]["runDetails"]["builder"]["id"].startswith("https://github.com/acme/")
    assert provenance.problems(data) == []


@pytest.mark.parametrize("break_it, why", [
    (lambda d: d.update(_type="https://in-toto.io/Statement/v0.1"), "Wrong statement type"),
    (lambda d: d["subject"][0].pop("digest"), "digest"),
    (lambda d: d.update(subject=[]), "At least one subject"),
    (lambda d: d["predicate"]["buildDefinition"].update(recipeFile="x"), "recipeFile"),
    (lambda d: d["predicate"]["runDetails"]["builder"].update(id=""), "builder.id is required"),
    (lambda d: d["predicate"]["buildDefinition"].pop("buildType"), "buildType is required"),
    (lambda d: d.update(predicateType="https://slsa.dev/provenance/v0.2"), "expected https://slsa.dev/provenance/v1"),
    (lambda d: d["predicate"]["buildDefinition"]["resolvedDependencies"].append({"annotations": {"a": 1}}),
     "At least one of name, URI, or digest"),
])
def test_the_validator_rejects_what_the_specs_forbid(release, break_it, why):
    data = copy.deepcopy(statement_of(release[1]))
    break_it(data)
    found = provenance.problems(data)
    assert found and why in " ".join(found), found


def test_verify_checks_the_provenance_of_a_tarball_and_of_an_unpacked_release(release):
    tarball, unpacked = release
    assert verify_target(tarball, rerun=False) == []
    data = statement_of(unpacked)
    data["predicate"]["buildDefinition"]["externalParameters"]["recipe"]["sha256"] = "0" * 64
    data["subject"] = data["subject"][1:]
    (unpacked / provenance.FILE).write_text(json_text(data))
    problems = verify(unpacked / "manifest.json", rerun=False)
    assert any("provenance.intoto.json: sha256 differs from SHA256SUMS" in p for p in problems)
    assert any("is in SHA256SUMS but not a subject" in p for p in problems)
    assert any("buildDefinition.externalParameters does not match manifest.json" in p for p in problems)


def test_a_release_without_its_provenance_does_not_verify(release, tmp_path):
    _, unpacked = release
    copy_dir = tmp_path / "copy"
    shutil.copytree(unpacked, copy_dir)
    (copy_dir / provenance.FILE).unlink()
    sums = copy_dir / SUMS
    sums.write_text("".join(line + "\n" for line in sums.read_text().splitlines() if provenance.FILE not in line))
    assert verify(copy_dir / "manifest.json", rerun=False) == [f"{copy_dir / provenance.FILE}: missing (every release carries its provenance)"]
