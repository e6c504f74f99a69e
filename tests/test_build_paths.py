"""The no_build_paths gate: which of this machine's paths no artifact may hold, found in plain files and zip members."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest

from vitq.check.build_paths import build_paths_in, machine_paths
from vitq.errors import GateError
from vitq.model.relative_paths import CHECKOUT
from vitq.orchestration.runner import run_stage
from vitq.recipe import load_recipe


def test_the_gate_finds_paths_in_plain_files_and_compressed_zip_members(tmp_path):
    forbidden = machine_paths(tmp_path / "artifacts")
    assert forbidden[str(CHECKOUT)] == "checkout" and forbidden[str(Path.home())] == "home"
    assert "/" not in forbidden
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"\x00trace: " + f"{CHECKOUT}/.venv/lib/x.py".encode() + b"\x00")
    assert build_paths_in(plain, forbidden)[0] in (str(CHECKOUT), f"{CHECKOUT}/.venv")
    packed = tmp_path / "packed.zip"
    with zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a/debug.txt", f"{tmp_path / 'artifacts'}/digits/x".encode() * 3)
    assert build_paths_in(packed, forbidden) == [str((tmp_path / "artifacts").absolute())]
    (tmp_path / "clean.bin").write_bytes(b"timm/layers/mlp.py")
    assert build_paths_in(tmp_path / "clean.bin", forbidden) == []


def test_an_artifact_holding_a_build_path_fails_the_build_in_one_line(tiny_build, tmp_path):
    import onnx

    paths = type(tiny_build)(tmp_path / "artifacts" / tiny_build.root.name)
    shutil.copytree(tiny_build.root, paths.root)
    model = onnx.load(str(paths.file("onnx_int8")))
    onnx.helper.set_model_props(model, {"built_in": str(Path.home() / "work" / "vitq")})
    onnx.save(model, str(paths.file("onnx_int8")))
    recipe = load_recipe(tiny_build.root.parent.parent / "tiny.yaml")
    with pytest.raises(GateError) as failed:
        run_stage("manifest", recipe, paths)
    line = str(failed.value)
    assert "\n" not in line and "int8.onnx contains " + str(Path.home()) + " (home)" in line, line
    manifest = json.loads(paths.manifest.read_text())
    assert manifest["passed"] is False
