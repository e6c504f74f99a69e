"""No artifact carries the build machine's directory layout; source paths stay, relative to their import root."""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

from vitq.buildpaths import CHECKOUT, relative_source, strip_build_paths
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


def test_scripted_torchscript_lite_onnx_and_pte_files_hold_no_build_path(tiny_build):
    """The tiny build is scripted (timm). Traced TorchScript (transformers) still records absolute paths."""
    forbidden = {str(CHECKOUT), *(p for p in sys.path if p.endswith("site-packages")), str(Path.home())}
    for v in VARIANTS:
        if v.file:
            data = contents(tiny_build.file(v.id))
            found = [p for p in forbidden if p.encode() + b"/" in data]
            assert found == [], (v.file, found)
    assert b"timm/models/vision_transformer.py" in contents(tiny_build.file("int8"))  # still useful for a reader
