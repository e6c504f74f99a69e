"""The ONNX export where torch's exporter fails on a model's fused attention: NesT's 5-D scaled_dot_product_attention
(and Twins', MaxViT's and the relative-position ViTs' fused outputs) export unfused, the stage says so, and the file
computes what the model computes."""

from __future__ import annotations

import pytest
import timm
import torch

from vitq.errors import VitqError
from vitq.model.runtimes import onnx_session
from vitq.stages import onnx_fp32

from helpers_models import tiny_recipe

BATCH = torch.export.Dim("batch", min=1, max=4096)


@pytest.mark.heavy
def test_fused_attention_the_exporter_cannot_take_is_exported_unfused(tmp_path):
    recipe = tiny_recipe(tmp_path)
    model = timm.create_model("nest_tiny", img_size=32, patch_size=2, num_classes=5).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(x).numpy()
    file = tmp_path / "nest.onnx"
    assert onnx_fp32._export(model, x, BATCH, recipe, file) == ", attention unfused"
    got = onnx_session(file, 1).run(None, {onnx_fp32.INPUT_NAME: x.numpy()})[0]
    assert abs(got - expected).max() <= 1e-4


class NoExport(torch.nn.Module):
    """No fused attention to unfuse, and a data-dependent branch the exporter refuses."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3)) if x.sum() > 0 else x.amax((2, 3))


def test_a_model_without_fused_attention_fails_in_one_line(tmp_path):
    recipe = tiny_recipe(tmp_path)
    with pytest.raises(VitqError) as info:
        onnx_fp32._export(NoExport().eval(), torch.randn(2, 3, 32, 32), BATCH, recipe, tmp_path / "no.onnx")
    message = str(info.value)
    assert message.startswith("tiny: ONNX export of ") and " failed: " in message and "\n" not in message
    assert not (tmp_path / "no.onnx").exists()
