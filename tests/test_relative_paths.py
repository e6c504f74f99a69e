"""No artifact carries the build machine's directory layout; source paths stay, relative to their import root."""

from __future__ import annotations

import io
import json
import sys
import zipfile
from pathlib import Path

import torch

from vitq.model.convert import save_torchscript
from vitq.model.relative_paths import CHECKOUT, relative_source, strip_build_paths
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
    assert relative_source(str(CHECKOUT / "vitq" / "model" / "networks.py")) == "vitq/model/networks.py"
    assert relative_source(None) is None
    trace = f'File "{site}/torch/nn/modules/module.py", line 3\nFile "{CHECKOUT}/vitq/model/networks.py", line 9'
    assert strip_build_paths(trace) == 'File "torch/nn/modules/module.py", line 3\nFile "vitq/model/networks.py", line 9'


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
