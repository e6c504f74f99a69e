"""vitq verify: hashes, the sample set and a re-run of every variant, against the manifest."""

from __future__ import annotations

import shutil

import pytest

from vitq.errors import InputError
from vitq.ship.verify import verify


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


# ---------------------------------------------------------------- untrusted input: manifests and tarballs


@pytest.mark.parametrize("path", ["../../etc/hostname", "/etc/hostname", "samples/../../x.pt"])
def test_a_manifest_naming_a_file_outside_its_folder_is_refused_in_one_line(build_copy, path):
    import json

    manifest = json.loads((build_copy / "manifest.json").read_text())
    manifest["artifacts"][0]["path"] = path
    (build_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError) as info:
        verify(build_copy / "manifest.json")
    assert "\n" not in str(info.value) and "artifacts/0/path" in str(info.value)


def test_a_symlink_out_of_the_build_folder_is_refused(build_copy, tmp_path):
    outside = tmp_path / "elsewhere.ptl"
    (build_copy / "int8.ptl").rename(outside)
    (build_copy / "int8.ptl").symlink_to(outside)
    with pytest.raises(InputError, match=r"artifacts/\d/path: 'int8.ptl' points outside the build folder; refused"):
        verify(build_copy / "manifest.json")


def test_a_release_tarball_verifies_as_downloaded_and_a_changed_one_does_not(tiny_build, tmp_path):
    import io
    import tarfile

    from vitq.ship.release import make_release
    from vitq.ship.verify import verify_target

    release = make_release(tiny_build.root, tmp_path / "rel")
    assert verify_target(release) == [] and verify_target(tiny_build.root, rerun=False) == []
    changed = tmp_path / "changed.tar.gz"
    with tarfile.open(release) as src, tarfile.open(changed, "w:gz") as dst:
        for m in src.getmembers():
            data = src.extractfile(m).read() if m.isfile() else None
            if m.name.endswith("int8.ptl"):
                data = data[:-1] + bytes([data[-1] ^ 1])
            dst.addfile(m, io.BytesIO(data) if data is not None else None)
    problems = verify_target(changed, rerun=False)
    assert any(p.endswith("tiny-0.0.0/int8.ptl: sha256 differs from the manifest") for p in problems), problems
    assert any("sha256 differs from SHA256SUMS" in p for p in problems)
    assert all(p.startswith(f"{changed}:tiny-0.0.0/") for p in problems)


@pytest.mark.parametrize("member, kind", [("../evil.txt", "file"), ("/tmp/evil.txt", "file"), ("top/link", "symlink")])
def test_a_tarball_with_members_that_escape_or_links_is_refused_and_nothing_is_written(tmp_path, member, kind):
    import io
    import tarfile

    from vitq.ship.verify import verify_target

    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(bad, "w:gz") as tar:
        info = tarfile.TarInfo(member)
        if kind == "symlink":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/hostname"
            tar.addfile(info)
        else:
            info.size = 4
            tar.addfile(info, io.BytesIO(b"evil"))
    before = set(tmp_path.parent.iterdir())
    with pytest.raises(InputError) as info:
        verify_target(bad)
    assert "\n" not in str(info.value) and "refused" in str(info.value) and member in str(info.value)
    assert set(tmp_path.parent.iterdir()) == before and not (tmp_path.parent / "evil.txt").exists()
