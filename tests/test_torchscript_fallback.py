"""The int8 TorchScript chain on models it used to crash on: a Linear whose weight the model's own code reads stays
float (a quantized Linear's weight is a method), ``export.method: auto`` scripts and traces where scripting fails,
the int8 stage records both, and every refusal is one line naming the recipe and the field."""

from __future__ import annotations

import json
import re

import pytest
import torch
import torch.nn.functional as F

from vitq.errors import RecipeError, display_path
from vitq.model.convert import export_and_save, export_torchscript, quantize_keeping_float
from vitq.model.runtimes import load_torchscript
from vitq.recipe import load_recipe

from conftest import write_recipe
from helpers_models import build, make_images, tiny_recipe

INPUT = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))


class ReadsWeight(torch.nn.Module):
    """Reads a Linear's weight as timm's BEiT/EVA (F.linear with weight=) and ConViT (weight.device) do."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.qkv = torch.nn.Linear(3, 16)
        self.head = torch.nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.linear(x.mean((2, 3)), weight=self.qkv.weight, bias=self.qkv.bias)
        return self.head(h.to(self.qkv.weight.device))


class Unscriptable(torch.nn.Module):
    """Fine in eager mode and traceable, but TorchScript cannot compile a generator expression."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(x.mean((2, 3)) * k for k in (1.0, 2.0))


class Neither(torch.nn.Module):
    """Cannot be scripted, and a trace freezes its branch (it differs from eager on other inputs)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = sum(x.mean((2, 3)) * k for k in (1.0, 2.0))
        return y if bool(x.abs().sum() > 0) else y * 0.0


@pytest.fixture
def recipes(tmp_path):
    """method -> a tiny recipe (timm ViT, random weights) with that export method; ``None``: the default."""
    base = tiny_recipe(tmp_path)
    out = {None: base}
    for method in ("auto", "script", "trace"):
        out[method] = load_recipe(write_recipe(tmp_path, f"tiny_{method}",
                                               base.path.read_text() + f"export: {{method: {method}}}\n"))
    return out


def test_a_linear_whose_weight_the_model_reads_stays_float_and_every_method_exports_it(recipes):
    quantized, kept = quantize_keeping_float(recipes["auto"], ReadsWeight().eval())
    assert kept == ["qkv"]
    assert type(quantized.qkv) is torch.nn.Linear
    assert type(quantized.head).__name__ == "Linear" and type(quantized.head) is not torch.nn.Linear  # dynamic int8
    with torch.no_grad():
        expected = quantized(INPUT)
        for method in ("auto", "script", "trace"):
            assert torch.allclose(export_torchscript(recipes[method], quantized)(INPUT), expected, atol=1e-6)


def test_auto_is_the_default_and_scripts_what_scripts_and_traces_what_does_not(recipes, tmp_path):
    assert recipes[None].export.method == "auto"
    assert export_and_save(recipes["auto"], ReadsWeight().eval(), tmp_path / "a.pt") == "script"
    assert export_and_save(recipes["auto"], Unscriptable(), tmp_path / "b.pt") == "trace"
    with torch.no_grad():
        assert torch.allclose(load_torchscript(tmp_path / "b.pt")(INPUT), Unscriptable()(INPUT))


CANNOT = [  # (method, model, the line after "<recipe>: export.method: ")
    ("script", Unscriptable, r"torch\.jit\.script failed \(.+\); try method: trace, or switch the \.ptl chain off "
                             r"with mobile: \{enabled: false\}"),
    ("trace", Neither, r"traced module differs from eager by \S+ \(> 0\.0001\); try method: script, or switch the "
                       r"\.ptl chain off with mobile: \{enabled: false\}"),
    ("auto", Neither, r"torch\.jit\.script failed \(.+\), then traced module differs from eager by \S+ \(> 0\.0001\); "
                      r"switch the \.ptl chain off with mobile: \{enabled: false\}"),
]


@pytest.mark.parametrize("method, model, message", CANNOT, ids=[c[0] for c in CANNOT])
def test_a_model_torchscript_cannot_take_is_one_line_naming_the_field_and_what_to_try(recipes, tmp_path, capfd,
                                                                                     method, model, message):
    recipe = recipes[method]
    with pytest.raises(RecipeError) as info:
        export_and_save(recipe, model(), tmp_path / "int8.pt")
    line = str(info.value)
    assert "\n" not in line and info.value.__suppress_context__ and info.value.field == "export.method"
    assert line.startswith(f"{display_path(recipe.path)}: export.method: ")
    assert re.fullmatch(message, line.split(": export.method: ", 1)[1])
    assert capfd.readouterr().err == ""  # no library log in front of the line


CONVIT = """\
threads: 1
model: {{source: timm, name: convit_tiny, kwargs: {{img_size: 32, depth: 1, embed_dim: 48, num_heads: 4, num_classes: 5}}}}
weights: {{random: {{seed: 0}}}}
preprocess: {{resize: 32, crop: 32, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5]}}
samples: {{dir: images, labels: images/labels.csv}}
export: {{method: {method}}}
"""


@pytest.mark.parametrize("method", ["script", "trace"])
def test_timm_convit_which_reads_its_qk_weight_builds_int8_with_that_linear_float(tmp_path, method):
    """timm's ConViT computes ``self.qk.weight.device`` in its forward: scripting the quantized model failed, and
    tracing it crashed the int8 stage with a traceback. Now its qk layer stays float and the stage says so."""
    make_images(tmp_path / "images")
    recipe = load_recipe(write_recipe(tmp_path, "convit", CONVIT.format(method=method)))
    paths = build(recipe, tmp_path / "out", ["fp32", "int8"])
    record = json.loads(paths.torchscript_record.read_text())
    assert record == {"method_asked": method, "method": method, "keep_float": ["blocks.0.attn.qk"]}
    assert load_torchscript(paths.file("int8"))(INPUT).shape == (2, 5)


MOBILEVIT_V2 = """\
threads: 1
model: {source: timm, name: mobilevitv2_050, kwargs: {num_classes: 5}}
weights: {random: {seed: 7}}
preprocess: {resize: 70, crop: 64, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}
samples: {dir: images, labels: images/labels.csv}
"""


def test_auto_traces_timm_mobilevit_v2_whose_scripted_module_cannot_be_saved(tmp_path):
    """MobileViT v2 scripts, but the scripted module cannot be saved (a Python call in its attention): with the
    default method the int8 stage traces it instead (checked against eager) and records that it did."""
    make_images(tmp_path / "images")
    paths = build(load_recipe(write_recipe(tmp_path, "mv2", MOBILEVIT_V2)), tmp_path / "out", ["fp32", "int8"])
    assert json.loads(paths.torchscript_record.read_text()) == {"method_asked": "auto", "method": "trace",
                                                                "keep_float": []}
    assert load_torchscript(paths.file("int8"))(torch.zeros(1, 3, 64, 64)).shape == (1, 5)
