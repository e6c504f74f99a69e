"""Loading and running every kind of variant: one loader per runtime of the variant table."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from vitq.errors import InputError
from vitq.model import runtimes
from vitq.recipe import load_recipe
from vitq.variants import VARIANTS

BATCH = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


BUILT = [v for v in VARIANTS if not v.strategy or v.strategy == "dynamic_int8"]  # the tiny build's one candidate


def files_of(paths):
    return {v.id: paths.file(v.id) for v in BUILT if v.file}


def test_every_variant_loads_and_returns_float_logits_close_to_fp32(tiny_build):
    recipe = load_recipe(tiny_build.root.parent.parent / "tiny.yaml")
    reference = runtimes.load("fp32", recipe, files_of(tiny_build), threads=1)(BATCH)
    for v in BUILT:
        out = runtimes.load(v.id, recipe, files_of(tiny_build), threads=1)(BATCH)
        assert isinstance(out, np.ndarray) and out.shape == (2, 5) and out.dtype == np.float32, v.id
        assert np.abs(out - reference).max() < 0.05 * np.abs(reference).max(), v.id


def test_quantized_torch_variants_pack_for_the_engine_they_are_loaded_with(tiny_build):
    recipe = load_recipe(tiny_build.root.parent.parent / "tiny.yaml")
    runtimes.load("int8_eager", recipe, files_of(tiny_build), threads=1, engine="x86")
    assert torch.backends.quantized.engine == "x86"
    runtimes.load("lite", recipe, files_of(tiny_build), threads=1)
    assert torch.backends.quantized.engine == recipe.quantize.engine


@pytest.mark.parametrize("variant", [v.id for v in BUILT if v.file])
def test_a_corrupt_file_is_one_line_naming_it(tiny_build, tmp_path, variant):
    recipe = load_recipe(tiny_build.root.parent.parent / "tiny.yaml")
    files = files_of(tiny_build)
    broken = tmp_path / files[variant].name
    broken.write_bytes(b"not a model at all")
    with pytest.raises(InputError) as info:
        runtimes.load(variant, recipe, {**files, variant: broken}, threads=1)
    assert str(info.value).startswith(f"{broken}: ") and "\n" not in str(info.value)
    shutil.rmtree(tmp_path)
