"""No artifact carries the build machine's directory layout; source paths stay, relative to their import root."""

from __future__ import annotations

import io
import json
import shutil
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from vitq.buildpaths import CHECKOUT, build_paths_in, machine_paths, relative_source, strip_build_paths
from vitq.convert import save_torchscript
from vitq.errors import GateError
from vitq.recipe import load_recipe
from vitq.runner import run_stage
from vitq.variants import VARIANTS


def contents(path: Path) -> bytes:
    """A file's bytes, with every member of a zip (TorchScript, lite) decompressed."""
    data = path.read_bytes()
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            data += b"".join(z.read(name) for name in z.namelist())
    return data


def test_source_paths_become_relative_to_their_import_root():
    site = next(p for p in sys.path if p.endswith("site-packages"))
    assert relative_source(f"{site}/timm/layers/mlp.py") == "timm/layers/mlp.py"
    assert relative_source(str(CHECKOUT / "vitq" / "models.py")) == "vitq/models.py"
    assert relative_source(None) is None
    trace = f'File "{site}/torch/nn/modules/module.py", line 3\nFile "{CHECKOUT}/vitq/models.py", line 9'
    assert strip_build_paths(trace) == 'File "torch/nn/modules/module.py", line 3\nFile "vitq/models.py", line 9'


FORBIDDEN = {str(CHECKOUT), *(p for p in sys.path if p.endswith("site-packages")), str(Path.home())}


def assert_no_build_path(paths) -> None:
    for v in VARIANTS:
        if v.file and paths.file(v.id).exists():
            data = contents(paths.file(v.id))
            found = [p for p in FORBIDDEN if p.encode() + b"/" in data]
            assert found == [], (v.file, found)


def test_scripted_torchscript_lite_onnx_and_pte_files_hold_no_build_path(tiny_build):
    assert_no_build_path(tiny_build)
    assert b"timm/models/vision_transformer.py" in contents(tiny_build.file("int8"))  # still useful for a reader
    [gate] = [c for c in json.loads(tiny_build.manifest.read_text())["checks"] if c["name"] == "no_build_paths"]
    assert gate["passed"] is True and gate["value"] == 0


def test_a_traced_module_keeps_its_call_stack_with_relative_paths(tmp_path):
    """Tracing records the file of every Python frame an op ran through; saved, they are relative."""
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU()).eval()
    traced = torch.jit.trace(model, torch.randn(1, 4))
    save_torchscript(traced, tmp_path / "m.pt")
    data = contents(tmp_path / "m.pt")
    assert [p for p in FORBIDDEN if p.encode() + b"/" in data] == []
    assert b"torch/nn/modules/linear.py" in data  # the call stack is still there for a reader
    x = torch.randn(5, 4)
    torch.testing.assert_close(torch.jit.load(str(tmp_path / "m.pt"))(x), model(x))  # loaded weights sit elsewhere


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
