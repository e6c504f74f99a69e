"""vitq.model.convert called directly on the tiny model's fp32 weights (the session's tiny build): dynamic quantization per
dtype, TorchScript by script or trace (and the one-line errors when either cannot be used), saved bytes, and the
shape of what the ExecuTorch export reports about XNNPACK's delegation (read from the build's pte stage: one
ExecuTorch export per session is enough)."""

from __future__ import annotations

import io
import shutil
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from vitq.errors import RecipeError, display_path
from vitq.model import networks
from vitq.model.convert import export_torchscript, quantize_dynamic_int8, save_torchscript
from vitq.model.relative_paths import CHECKOUT
from vitq.model.torch_setup import set_engine
from vitq.recipe import DTYPES, load_recipe

INPUT = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))
ENGINE_FOR = {"qint8": "qnnpack", "float16": "x86"}  # float16 has no qnnpack kernel (a recipe error)
PACKED_AS = {"qint8": torch.qint8, "float16": torch.float16}


@pytest.fixture(scope="module")
def tiny(tiny_build, tmp_path_factory):
    """The tiny recipe (its copy, to derive others from) and its fp32 model, loaded from the shared build."""
    folder = tmp_path_factory.mktemp("convert") / "tiny"
    shutil.copytree(tiny_build.root.parent.parent, folder, ignore=shutil.ignore_patterns("artifacts"))
    recipe = load_recipe(folder / "tiny.yaml")
    return recipe, networks.load_fp32(recipe, tiny_build.file("fp32"))


@pytest.fixture
def engine():
    """Tests set the quantized engine a recipe asks for; the next test gets the engine it found."""
    before = torch.backends.quantized.engine
    yield
    torch.backends.quantized.engine = before


def with_fields(recipe, extra):
    """The tiny recipe plus YAML ``extra``, written beside it (so it validates as a user's file would)."""
    folder = recipe.path.parent
    path = folder / f"v{len(list(folder.glob('v*.yaml')))}.yaml"
    path.write_text(recipe.path.read_text() + extra)
    return load_recipe(path)


def linears(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.Linear)]


# ----------------------------------------------------------------------------------------------- quantize


@pytest.mark.parametrize("dtype", DTYPES)
def test_dynamic_quantization_packs_every_linear_in_the_recipes_dtype_and_keeps_fp32_intact(tiny, engine, dtype):
    base, fp32 = tiny
    recipe = with_fields(base, f"quantize: {{dtype: {dtype}, engine: {ENGINE_FOR[dtype]}}}\n")
    set_engine(recipe, recipe.quantize.engine)
    before = {k: v.clone() for k, v in fp32.state_dict().items()}
    float_linears = len(linears(fp32))
    quantized = quantize_dynamic_int8(recipe, fp32)
    dynamic = [m for m in quantized.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    assert float_linears > 0 and len(dynamic) == float_linears and linears(quantized) == []
    assert {m._packed_params.dtype for m in dynamic} == {PACKED_AS[dtype]}
    # the reference model is copied, not changed: evaluation compares the two
    assert len(linears(fp32)) == float_linears
    assert all(torch.equal(before[k], v) for k, v in fp32.state_dict().items())
    with torch.no_grad():
        want, got = fp32(INPUT), quantized(INPUT)
    error = (got - want).abs().max() / want.abs().max()
    assert 0 < error < (0.05 if dtype == "qint8" else 1e-2)


# ----------------------------------------------------------------------------------------------- TorchScript


@pytest.fixture(scope="module")
def int8(tiny):
    """The tiny model quantized as the int8 stage does (qint8, qnnpack)."""
    recipe, fp32 = tiny
    before = torch.backends.quantized.engine
    set_engine(recipe, "qnnpack")
    yield recipe, quantize_dynamic_int8(recipe, fp32)
    torch.backends.quantized.engine = before


@pytest.fixture(scope="module")
def exported(int8):
    """int8 by both methods: method -> (recipe, ScriptModule)."""
    recipe, model = int8
    out = {}
    for method in ("script", "trace"):
        r = recipe if method == "script" else with_fields(recipe, "export: {method: trace}\n")
        out[method] = r, export_torchscript(r, model)
    return out


@pytest.mark.parametrize("method", ["script", "trace"])
def test_both_methods_give_a_torchscript_module_that_computes_what_eager_int8_does(int8, exported, engine, method):
    _, eager = int8
    _, module = exported[method]
    torch.backends.quantized.engine = "qnnpack"
    assert isinstance(module, torch.jit.ScriptModule)
    assert "quantized::linear_dynamic" in str(module.inlined_graph)
    with torch.no_grad():
        assert torch.allclose(module(INPUT), eager(INPUT), rtol=0, atol=1e-6)
        assert module(INPUT[:1]).shape == (1, 5)  # traced at batch 1, runs at any batch size


class Branchy(torch.nn.Module):
    """Takes another path for an all-zero image (the example input tracing uses) than for a real one."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool(x.abs().sum() > 0):
            return x.mean((2, 3)) * 2.0
        return x.mean((2, 3))


class Unscriptable(torch.nn.Module):
    """Fine in eager mode and traceable, but TorchScript cannot compile a generator expression."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(x.mean((2, 3)) * k for k in (1.0, 2.0))


def test_script_keeps_control_flow_that_trace_would_freeze_and_trace_refuses_in_one_line(tiny):
    recipe, _ = tiny
    scripted = export_torchscript(recipe, Branchy())
    with torch.no_grad():
        assert torch.equal(scripted(INPUT), Branchy()(INPUT))
        assert torch.equal(scripted(torch.zeros(1, 3, 32, 32)), torch.zeros(1, 3))
    traced_recipe = with_fields(recipe, "export: {method: trace}\n")
    with pytest.raises(RecipeError) as info:
        export_torchscript(traced_recipe, Branchy())
    line = str(info.value)
    assert "\n" not in line
    assert line.startswith(f"{display_path(traced_recipe.path)}: export.method: traced module differs from eager by ")
    assert line.endswith("(> 0.0001); try method: script, or switch the .ptl chain off with mobile: {enabled: false}")


def test_a_model_torchscript_cannot_compile_is_one_line_suggesting_trace_and_trace_works(tiny):
    recipe = with_fields(tiny[0], "export: {method: script}\n")
    with pytest.raises(RecipeError) as info:
        export_torchscript(recipe, Unscriptable())
    line = str(info.value)
    assert "\n" not in line and info.value.__suppress_context__  # no library traceback chained to it
    assert line.startswith(f"{display_path(recipe.path)}: export.method: torch.jit.script failed (")
    assert line.endswith("); try method: trace, or switch the .ptl chain off with mobile: {enabled: false}")
    assert info.value.field == "export.method"
    traced = export_torchscript(with_fields(recipe, "export: {method: trace}\n"), Unscriptable())
    with torch.no_grad():
        assert torch.allclose(traced(INPUT), Unscriptable()(INPUT))


# ----------------------------------------------------------------------------------------------- saved bytes


def members(data: bytes) -> bytes:
    """A TorchScript file's bytes with every zip member decompressed (debug info is compressed)."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return data + b"".join(z.read(name) for name in z.namelist())


@pytest.mark.parametrize("method", ["script", "trace"])
def test_saving_twice_gives_the_same_bytes_with_no_path_of_this_machine(exported, engine, tmp_path, method):
    _, module = exported[method]
    first, second = tmp_path / "a" / "int8.pt", tmp_path / "b" / "int8.pt"
    first.parent.mkdir()
    second.parent.mkdir()
    save_torchscript(module, first)
    save_torchscript(module, second)
    data = first.read_bytes()
    assert data == second.read_bytes()
    text = members(data)
    machine = {str(CHECKOUT), str(Path.home()), str(tmp_path), sys.prefix,
               *(p for p in sys.path if p.endswith("site-packages"))}
    assert [p for p in machine if p.encode() + b"/" in text] == []
    torch.backends.quantized.engine = "qnnpack"
    with torch.no_grad():
        assert torch.allclose(torch.jit.load(str(first))(INPUT), module(INPUT), rtol=0, atol=1e-6)


def test_the_built_int8_file_saved_again_loads_to_the_same_numbers(tiny_build, engine, tmp_path):
    """What save_torchscript writes is a TorchScript file torch (and so the mobile chain) reads back as it was."""
    torch.backends.quantized.engine = "qnnpack"
    built = torch.jit.load(str(tiny_build.file("int8")))
    save_torchscript(built, tmp_path / "int8.pt")
    with torch.no_grad():
        assert torch.allclose(torch.jit.load(str(tmp_path / "int8.pt"))(INPUT), built(INPUT), rtol=0, atol=1e-6)


class SamePadded(torch.nn.Module):
    """ConvMixer's depthwise conv with padding="same", and a dilated one."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.depthwise = torch.nn.Conv2d(3, 3, 5, groups=3, padding="same")
        self.dilated = torch.nn.Conv2d(3, 3, 3, dilation=2, padding="same")

    def forward(self, x):
        return self.depthwise(x) + x + self.dilated(x)


def test_same_padded_convs_survive_optimize_for_mobile_and_compute_the_same(tiny):
    """optimize_for_mobile failed on an internal assertion for a conv with padding="same" (ConvMixer)."""
    from torch.utils.mobile_optimizer import optimize_for_mobile

    model = SamePadded().eval()
    with torch.no_grad():
        want = model(INPUT)
    optimized = optimize_for_mobile(export_torchscript(tiny[0], model))
    assert (model.depthwise.padding, model.dilated.padding) == ((2, 2), (2, 2))
    with torch.no_grad():
        assert torch.allclose(optimized(INPUT), want, atol=1e-5)


def test_a_lopsided_same_padding_is_left_as_it_is():
    """kernel 4: one more row and column of padding after than before, which a conv's padding cannot say."""
    from vitq.model.convert import explicit_same_padding

    conv = torch.nn.Conv2d(3, 3, 4, padding="same")
    assert explicit_same_padding(conv).padding == "same"
