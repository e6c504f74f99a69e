"""vitq.model.torch_setup: every process that builds or runs a model sets torch up from the recipe (threads, deterministic
algorithms, quantized engine), silences the deprecation notices torch repeats on every call but no other warning,
and an engine this torch lacks is one line naming the field."""

from __future__ import annotations

import warnings

import pytest
import torch

from vitq.errors import RecipeError, display_path
from vitq.model.torch_setup import configure_torch, set_engine
from vitq.recipe import load_recipe

from conftest import write_recipe
from helpers_models import TINY_TIMM


@pytest.fixture
def restored():
    """What configure_torch changes is process-wide: put it back for the next test."""
    state = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(), torch.backends.quantized.engine
    yield
    torch.set_num_threads(state[0])
    torch.use_deterministic_algorithms(state[1])
    torch.backends.quantized.engine = state[2]


def recipe(tmp_path, extra=""):
    return load_recipe(write_recipe(tmp_path, "r", TINY_TIMM.format(extra=extra).replace("threads: 1", "threads: 3")))


@pytest.mark.parametrize("engine", ["qnnpack", "x86"])
def test_threads_determinism_and_engine_come_from_the_recipe(tmp_path, restored, engine):
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(False)
    configure_torch(recipe(tmp_path, f"quantize: {{engine: {engine}}}\n"))
    assert torch.get_num_threads() == 3
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.backends.quantized.engine == engine


def test_a_thread_count_given_by_the_caller_wins(tmp_path, restored):
    configure_torch(recipe(tmp_path), threads=2)
    assert torch.get_num_threads() == 2


def test_tool_deprecation_notices_are_silenced_and_other_warnings_still_shown(tmp_path, restored):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        configure_torch(recipe(tmp_path))
        warnings.warn("torch.jit.script is deprecated", UserWarning, stacklevel=1)
        warnings.warn("Use the lite interpreter at your own risk", UserWarning, stacklevel=1)
        warnings.warn("TorchScript support is in maintenance mode", UserWarning, stacklevel=1)
        warnings.warn("old API", DeprecationWarning, stacklevel=1)
        warnings.warn("changes next release", FutureWarning, stacklevel=1)
        warnings.warn("Currently, qnnpack incorrectly ignores reduce_range", UserWarning, stacklevel=1)
        warnings.warn("labels.csv lists an image twice", UserWarning, stacklevel=1)
        warnings.warn("overflow encountered", RuntimeWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["labels.csv lists an image twice", "overflow encountered"]


def test_an_engine_this_torch_lacks_is_one_line_naming_the_field_and_listing_what_it_has(tmp_path, restored):
    r = recipe(tmp_path)
    torch.backends.quantized.engine = "qnnpack"
    with pytest.raises(RecipeError) as info:
        set_engine(r, "neon")
    available = torch.backends.quantized.supported_engines
    assert str(info.value) == (f"{display_path(r.path)}: quantize.engine: 'neon' is not available in this torch build "
                               f"(have {', '.join(available)})")
    assert torch.backends.quantized.engine == "qnnpack"  # unchanged

