"""vitq predict: any variant's file, the build's preprocessing and class names."""

from __future__ import annotations

import pytest

from vitq.errors import InputError
from vitq.ship.predict import predict
from vitq.variants import VARIANTS


def test_every_shipped_file_predicts_the_same_top_class_for_an_image(tiny_build):
    image = tiny_build.samples_dir / "img0.jpg"
    tops = {}
    for v in VARIANTS:
        if v.file and v.strategy in (None, "dynamic_int8"):  # the tiny build's one ExecuTorch candidate
            [(got_image, best)] = predict(tiny_build.file(v.id), [image], top=3)
            assert got_image == image and len(best) == 3
            assert all(name == f"class {i}" for i, name, _ in best) and 0 < best[0][2] <= 1
            tops[v.id] = best[0][0]
    assert len(set(tops.values())) == 1, tops


def test_predict_refuses_a_file_that_is_not_an_artifact_in_one_line(tiny_build, tmp_path):
    other = tmp_path / "model.bin"
    other.write_bytes(b"x")
    with pytest.raises(InputError, match="model.bin: not a vitq artifact; expected one of fp32.safetensors"):
        predict(other, [tiny_build.samples_dir / "img0.jpg"])


def test_a_corrupt_artifact_is_one_line(tiny_build, tmp_path):
    import shutil

    copy = tmp_path / "tiny"
    shutil.copytree(tiny_build.root, copy)
    (copy / "int8.pt").write_bytes(b"junk")
    with pytest.raises(InputError, match=r"int8.pt: cannot load it as torchscript"):
        predict(copy / "int8.pt", [copy / "samples" / "img0.jpg"])
