"""vitq.model.xnnpack_rewrites: every rewrite computes what the original computes (within 1e-5 in fp32), the edge
passes remove the nodes they target, and with all of them XNNPACK takes the whole tiny transformers ViT (the timm
one: the session's tiny build), which ExecuTorch's runtime then runs close to eager."""

from __future__ import annotations

import copy

import pytest
import torch

from vitq.model.logits import LogitsOnly
from vitq.model.xnnpack_rewrites import (
    UNMASKED_EAGER,
    FusedQkvAttention,
    LayerNorm4d,
    RemoveNoopExpand,
    SelectAsSliceView,
    SqueezeAsView,
    fused_qkv_projections,
    layer_norms_as_4d_means,
    prepare_for_xnnpack,
    unfused_attention,
)

EDGE_OPS = {SqueezeAsView: "squeeze_copy", RemoveNoopExpand: "expand_copy", SelectAsSliceView: "select_copy"}
EXACT = 1e-5


# One block: lowering time grows with the graph, and one block already holds every operator a ViT has.
def tiny_timm() -> torch.nn.Module:
    import timm

    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, embed_dim=48,
                             depth=1, num_heads=3, num_classes=10).eval()


def tiny_transformers() -> torch.nn.Module:
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=48, num_hidden_layers=1, num_attention_heads=3,
                       intermediate_size=96, num_labels=10)
    return LogitsOnly(ViTForImageClassification(config).eval()).eval()


MODELS = {"timm": tiny_timm, "transformers": tiny_transformers}


def images(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def max_diff(a: torch.nn.Module, b: torch.nn.Module, inputs: torch.Tensor) -> float:
    with torch.no_grad():
        return (a(inputs) - b(inputs)).abs().max().item()


@pytest.mark.parametrize("name", MODELS)
def test_unfused_attention_computes_the_same(name):
    model = MODELS[name]()
    rewritten = unfused_attention(copy.deepcopy(model))
    assert max_diff(model, rewritten, images()) <= EXACT
    if name == "timm":
        flags = [m.fused_attn for m in rewritten.modules() if hasattr(m, "fused_attn")]
        assert flags and not any(flags)
    else:
        assert rewritten.model.config._attn_implementation == UNMASKED_EAGER


def test_fused_qkv_projections_computes_the_same():
    model = unfused_attention(tiny_transformers())
    rewritten = fused_qkv_projections(copy.deepcopy(model))
    assert sum(isinstance(m, FusedQkvAttention) for m in rewritten.modules()) == 1
    assert not any(hasattr(m, "q_proj") for m in rewritten.modules())
    assert max_diff(model, rewritten, images()) <= EXACT


@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_4d_computes_the_same(affine):
    norm = torch.nn.LayerNorm(48, eps=1e-6, elementwise_affine=affine)
    if affine:
        torch.nn.init.normal_(norm.weight)
        torch.nn.init.normal_(norm.bias)
    inputs = 3 + 2 * torch.randn(2, 5, 48, generator=torch.Generator().manual_seed(2))
    assert max_diff(norm, LayerNorm4d(norm), inputs) <= EXACT


@pytest.mark.parametrize("name", MODELS)
def test_layer_norms_as_4d_means_replaces_them_all(name):
    model = MODELS[name]()
    rewritten = layer_norms_as_4d_means(copy.deepcopy(model))
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in rewritten.modules())
    assert sum(isinstance(m, LayerNorm4d) for m in rewritten.modules()) == 3  # 2 per block + the final one
    assert max_diff(model, rewritten, images()) <= EXACT


def test_prepare_for_xnnpack_leaves_the_callers_model_alone():
    model = tiny_timm()
    prepared = prepare_for_xnnpack(model)
    assert any(isinstance(m, torch.nn.LayerNorm) for m in model.modules())
    assert all(m.fused_attn == timm_default_fused_attn() for m in model.modules() if hasattr(m, "fused_attn"))
    assert max_diff(model, prepared, images()) <= EXACT
    assert prepare_for_xnnpack(model, inplace=True) is model


def timm_default_fused_attn() -> bool:
    from timm.layers import use_fused_attn

    return use_fused_attn()


@pytest.fixture(scope="module")
def edge_timm():
    """The prepared tiny timm ViT in the edge dialect, before any of our passes."""
    from executorch.exir import to_edge

    return to_edge(torch.export.export(prepare_for_xnnpack(tiny_timm()), (images(1),), strict=False))


def count(edge, name: str) -> int:
    return sum(name in str(n.target) for n in edge.exported_program().graph.nodes if n.op == "call_function")


@pytest.mark.parametrize("edge_pass", EDGE_OPS)
def test_edge_pass_removes_its_nodes_and_keeps_the_output(edge_timm, edge_pass):
    op = EDGE_OPS[edge_pass]
    after = edge_timm.transform([edge_pass()])
    assert count(edge_timm, op) > 0
    assert count(after, op) == 0
    inputs = images(1)
    assert max_diff(edge_timm.exported_program().module(), after.exported_program().module(), inputs) == 0


def test_remove_noop_expand_keeps_a_real_broadcast():
    from executorch.exir import to_edge

    class Broadcast(torch.nn.Module):
        def forward(self, x):
            return x.expand(4, -1) + x.expand(1, -1)

    edge = to_edge(torch.export.export(Broadcast(), (torch.randn(1, 3),), strict=False))
    after = edge.transform([RemoveNoopExpand()])
    assert (count(edge, "expand_copy"), count(after, "expand_copy")) == (2, 1)


TINY_TRANSFORMERS = """\
model: {source: transformers, name: ViTForImageClassification,
        kwargs: {image_size: 32, patch_size: 8, hidden_size: 48, num_hidden_layers: 1, num_attention_heads: 3,
                 intermediate_size: 96, num_labels: 10}}
weights: {random: {seed: 0}}
preprocess: {resize: 36, crop: 32, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5]}
samples: {dir: images, labels: images/labels.csv}
export: {method: trace}
"""


def test_xnnpack_takes_the_whole_transformers_vit_and_executorch_runs_it(tmp_path):
    """vitq's own export (the timm ViT's is the session's tiny build, tests/test_executorch_export.py): one
    delegate, nothing on portable kernels, and the runtime's logits close to eager fp32."""
    from vitq.model.executorch_export import export_executorch
    from vitq.model.networks import create_model
    from vitq.model.runtimes import load_pte
    from vitq.recipe import load_recipe

    from conftest import write_recipe

    recipe = load_recipe(write_recipe(tmp_path, "hf", TINY_TRANSFORMERS))
    torch.manual_seed(0)
    model = create_model(recipe)
    program, delegation = export_executorch(recipe, model)
    assert (delegation["delegated_subgraphs"], delegation["portable_nodes"]) == (1, 0), delegation
    (tmp_path / "hf.pte").write_bytes(program)
    inputs = images(1)
    with torch.no_grad():
        want = model(inputs)
    got = torch.from_numpy(load_pte(tmp_path / "hf.pte")(inputs))
    assert (got - want).abs().max().item() <= 0.1 * want.abs().max().item()
