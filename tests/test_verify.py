"""vitq verify: hashes, the sample set and a re-run of every variant, against the manifest."""

from __future__ import annotations

import shutil

import pytest

from vitq.errors import InputError
from vitq.verify import verify


@pytest.fixture
def build_copy(tiny_build, tmp_path):
    copy = tmp_path / "tiny"
    shutil.copytree(tiny_build.root, copy)
    return copy


def test_an_intact_build_verifies_with_a_re_run(tiny_build):
    assert verify(tiny_build.manifest) == []


def test_a_flipped_byte_and_a_deleted_file_are_named(build_copy):
    lite = build_copy / "int8.ptl"
    data = bytearray(lite.read_bytes())
    data[len(data) // 2] ^= 0x01
    lite.write_bytes(bytes(data))
    (build_copy / "int8.onnx").unlink()
    problems = verify(build_copy / "manifest.json")
    assert any(p.endswith("int8.ptl: sha256 differs from the manifest") for p in problems)
    assert any(p.endswith("int8.onnx: missing (onnx_int8)") for p in problems)


def test_a_changed_sample_image_is_found(build_copy):
    images = sorted((build_copy / "samples").glob("img*"))
    shutil.copyfile(images[1], images[0])
    assert any("sample images or labels differ" in p for p in verify(build_copy / "manifest.json"))


def test_a_re_run_that_disagrees_with_the_manifest_names_the_variant_and_metric(build_copy):
    import json

    manifest = json.loads((build_copy / "manifest.json").read_text())
    manifest["accuracy"]["lite"]["max_abs_logit_diff"] += 0.5
    (build_copy / "manifest.json").write_text(json.dumps(manifest))
    [problem] = verify(build_copy / "manifest.json")
    assert problem.endswith("lite max_abs_logit_diff is " + problem.split(" is ")[1]) and "int8.ptl" in problem


def test_a_corrupt_manifest_is_one_line(tmp_path):
    bad = tmp_path / "manifest.json"
    bad.write_text('{"schema": "vitq.manifest/1"}')
    with pytest.raises(InputError, match=r"manifest.json: \(top\): 'recipe' is a required property"):
        verify(bad)
