"""vitq.model.xnnpack_rewrites: every rewrite computes what the original computes (within 1e-5 in fp32), the edge
passes remove the nodes they target, and with all of them XNNPACK takes the whole tiny transformers ViT (the timm
one: the session's tiny build), which ExecuTorch's runtime then runs close to eager."""

from __future__ import annotations

import copy

import pytest
import torch

from vitq.model.attention import UNMASKED_EAGER, unfused_attention
from vitq.model.executorch_export import LoweredProgramFails, run_lowered_once
from vitq.model.logits import LogitsOnly
from vitq.model.xnnpack_rewrites import (
    NORMS_4D,
    AmaxAsMaximum,
    ChannelLayerNorm4d,
    CopyAsSource,
    ExpandAsBroadcast,
    FinitePoolPadding,
    FoldedRelativePositionBias,
    FoldShapeConstants,
    FusedQkvAttention,
    GroupNorm4d,
    LargerOperandFirst,
    LayerNorm4d,
    LinearSelfAttentionMeans,
    MeanAs4d,
    NearestUpsampleAsBroadcast,
    PowAsMul,
    RemoveAliasCopy,
    RemoveNoopExpand,
    RollAsSlices,
    SelectAsSliceView,
    SingleTensorCat,
    SoftmaxOnLastDim,
    SplitAsSlices,
    SqueezeAsView,
    StridedSliceAsView,
    SumAsMean,
    UnpaddedAvgPool,
    VarAsMeans,
    edge_passes,
    folded_relative_position_biases,
    fused_qkv_projections,
    layer_norms_as_4d_means,
    linear_self_attention_means,
    prepare_for_xnnpack,
    reparameterized_branches,
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


@pytest.mark.heavy  # a whole lowering (the timm one is the session's tiny build, in make test-fast)
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
    program, delegation = export_executorch(recipe, model, recipe.pte_candidates[0])
    assert (delegation["delegated_subgraphs"], delegation["portable_nodes"]) == (1, 0), delegation
    (tmp_path / "hf.pte").write_bytes(program)
    inputs = images(1)
    with torch.no_grad():
        want = model(inputs)
    got = torch.from_numpy(load_pte(tmp_path / "hf.pte")(inputs))
    assert (got - want).abs().max().item() <= 0.1 * want.abs().max().item()


# The mobile ViT families (issue 21): each module rewrite against the timm module it replaces, each edge pass on a
# tiny module holding the pattern it targets (to_edge only), and one small lowering with all of them.

def randn(*shape: int, seed: int = 3) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def randomized(module: torch.nn.Module) -> torch.nn.Module:
    """Affine weights and biases away from their 1 / 0 init, so a mixed-up parameter shows."""
    torch.manual_seed(4)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.normal_()
    return module.eval()


def test_channel_layer_norm_4d_computes_timms_layer_norm_2d():
    from timm.layers import LayerNorm2d

    norm = randomized(LayerNorm2d(24, eps=1e-5))
    rewritten = layer_norms_as_4d_means(copy.deepcopy(norm))
    assert type(rewritten) is ChannelLayerNorm4d  # an nn.LayerNorm subclass, but not over the last dim
    assert max_diff(norm, rewritten, 3 + 2 * randn(2, 24, 5, 7)) <= EXACT


def test_timms_last_dim_layer_norm_becomes_layer_norm_4d():
    from timm.layers import LayerNorm

    assert type(layer_norms_as_4d_means(LayerNorm(8))) is LayerNorm4d


@pytest.mark.parametrize("groups", [1, 2])
def test_group_norm_4d_computes_the_same(groups):
    from timm.layers import GroupNorm1

    norm = randomized(GroupNorm1(8) if groups == 1 else torch.nn.GroupNorm(groups, 8))
    rewritten = layer_norms_as_4d_means(copy.deepcopy(norm))
    assert type(rewritten) is GroupNorm4d
    assert max_diff(norm, rewritten, 3 + 2 * randn(2, 8, 4, 6)) <= EXACT


@pytest.mark.parametrize("kind", ["GroupNorm1NoBias", "LayerNorm2dNoBias", "LayerNormNoBias"])
def test_norm_subclasses_without_a_bias_are_rewritten_too(kind):
    """PoolFormerV2's norms subclass timm's (or torch's) only to drop the bias; their parent's forward runs."""
    from timm.models import metaformer

    norm = randomized(getattr(metaformer, kind)(8))
    rewritten = layer_norms_as_4d_means(copy.deepcopy(norm))
    assert isinstance(rewritten, NORMS_4D) and rewritten.bias is None
    x = 3 + 2 * (randn(2, 5, 3, 8) if kind == "LayerNormNoBias" else randn(2, 8, 4, 6))
    assert max_diff(norm, rewritten, x) <= EXACT


@pytest.mark.parametrize("kind", ["GroupNormAct", "GroupNorm1Act", "LayerNormAct", "LayerNormAct2d"])
def test_timms_norm_and_activation_layers_become_the_norm_then_their_activation(kind):
    """The ResNetV2 hybrids' GroupNormAct: F.group_norm, dropout, activation in one module."""
    from timm import layers

    norm = randomized(getattr(layers, kind)(8, **({"num_groups": 2} if kind == "GroupNormAct" else {})))
    rewritten = layer_norms_as_4d_means(copy.deepcopy(norm))
    assert isinstance(rewritten, torch.nn.Sequential) and isinstance(rewritten[0], NORMS_4D)
    x = 3 + 2 * (randn(2, 5, 3, 8) if kind == "LayerNormAct" else randn(2, 8, 4, 6))
    assert max_diff(norm, rewritten, x) <= EXACT


def test_linear_self_attention_means_computes_the_same():
    from timm.models.mobilevit import LinearSelfAttention

    torch.manual_seed(0)
    model = torch.nn.Sequential(LinearSelfAttention(16)).eval()
    rewritten = linear_self_attention_means(copy.deepcopy(model))
    assert isinstance(rewritten[0], LinearSelfAttentionMeans)
    assert max_diff(model, rewritten, randn(2, 16, 4, 9)) <= EXACT


def test_folded_relative_position_bias_computes_the_same():
    from timm.models.swin_transformer import WindowAttention

    torch.manual_seed(0)
    model = torch.nn.Sequential(WindowAttention(16, num_heads=2, window_size=3)).eval()
    with torch.no_grad():
        model[0].relative_position_bias_table.normal_()
    rewritten = folded_relative_position_biases(copy.deepcopy(model))
    assert isinstance(rewritten[0], FoldedRelativePositionBias)
    assert max_diff(model, rewritten, randn(4, 9, 16)) <= EXACT
    program = torch.export.export(rewritten, (randn(4, 9, 16),), strict=False)
    assert not any("index" in str(n.target) for n in program.graph.nodes if n.op == "call_function")


def test_reparameterized_branches_compute_the_same():
    from timm.models.fastvit import MobileOneBlock

    torch.manual_seed(0)
    model = torch.nn.Sequential(MobileOneBlock(8, 8, 3), MobileOneBlock(8, 8, 1, use_act=False))
    for module in model.modules():  # BatchNorm statistics away from 0 / 1, so an unfolded one shows
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
    model.eval()
    rewritten = reparameterized_branches(copy.deepcopy(model))
    assert all(block.reparam_conv is not None for block in rewritten)
    assert max_diff(model, rewritten, randn(2, 8, 6, 6)) <= EXACT
    plain = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1))
    assert reparameterized_branches(plain) is plain


class Patterns(torch.nn.Module):
    """What the mobile families leave on portable kernels: torch.split / chunk, a token mean over dim 1 of a 3-D
    tensor and a 4-D mean over dims [2, 3] without keepdim, a strided subsample whose length the step does not
    divide, torch.roll over two dims, a slice over whole dims (an alias), an unsqueeze at the front."""

    def forward(self, x):  # x: [1, 7, 5, 8]
        a, b, c = x.split([2, 3, 3], dim=-1)
        d, e = x.chunk(2, dim=1)
        tokens = (b * c).flatten(1, 2)  # [1, 35, 3]
        pooled = tokens.mean(1) + x.mean((2, 3))[:, :3]
        strided = a[:, ::2, ::3]  # 7 -> 4 rows, 5 -> 2 columns
        rolled = torch.roll(x, shifts=(-2, 3), dims=(1, 2))
        return pooled, strided, d[:, :3] * e, rolled[:, :7, :5] * x.unsqueeze(0)[0]


PASS_OPS = {SplitAsSlices: ("split",), MeanAs4d: ("mean",), StridedSliceAsView: ("slice",),
            RollAsSlices: ("index_select", "arange", "fmod"), SqueezeAsView: ("unsqueeze",),
            RemoveAliasCopy: ("alias_copy",)}


@pytest.fixture(scope="module")
def edge_patterns():
    from executorch.exir import to_edge

    return to_edge(torch.export.export(Patterns(), (randn(1, 7, 5, 8),), strict=False))


def means_xnnpack_rejects(edge) -> int:
    """mean.dim nodes other than XNNPACK's one: dims [2, 3] of a 4-D tensor, keepdim."""
    return sum("mean.dim" in str(n.target) and not (n.args[0].meta["val"].dim() == 4 and sorted(n.args[1]) == [2, 3]
                                                   and len(n.args) > 2 and n.args[2])
               for n in edge.exported_program().graph.nodes if n.op == "call_function")


def strided_slices(edge) -> int:
    return sum("slice_copy" in str(n.target) and len(n.args) > 4 and n.args[4] != 1
               for n in edge.exported_program().graph.nodes if n.op == "call_function")


@pytest.mark.parametrize("edge_pass", PASS_OPS)
def test_mobile_edge_pass_removes_its_pattern_and_keeps_the_output(edge_patterns, edge_pass):
    after = edge_patterns.transform([edge_pass()])
    for op in PASS_OPS[edge_pass]:
        remaining = {"mean": means_xnnpack_rejects, "slice": strided_slices}.get(op, lambda e, o=op: count(e, o))
        assert remaining(edge_patterns) > 0, op
        assert remaining(after) == 0, op
    inputs = randn(1, 7, 5, 8, seed=6)
    with torch.no_grad():
        want = edge_patterns.exported_program().module()(inputs)
        got = after.exported_program().module()(inputs)
    assert max(float((w - g).abs().max()) for w, g in zip(want, got, strict=True)) <= EXACT


def test_roll_as_slices_keeps_an_index_that_is_no_rotation():
    from executorch.exir import to_edge

    class Gather(torch.nn.Module):
        def forward(self, x):
            return x.index_select(1, torch.tensor([2, 0, 1, 1]))

    edge = to_edge(torch.export.export(Gather(), (randn(1, 4, 3),), strict=False))
    assert count(edge.transform([RollAsSlices()]), "index_select") == 1


def test_run_lowered_once_names_the_runtimes_cause():
    with pytest.raises(LoweredProgramFails, match="does not run in ExecuTorch: .+"):
        run_lowered_once(b"not a program", (images(1),))


# The norm and position-encoding patterns (issue 30: XCiT, EdgeNeXt, ConvNeXt V2): the same checks on a tiny module.

class NormPatterns(torch.nn.Module):
    """What XCiT, EdgeNeXt and ConvNeXt V2 leave on portable kernels: F.normalize (pow by 2.0, sum, pow by 0.5,
    expand_as), ConvNeXt V2's GRN norm over two dims, variances (ConvNeXt's *_rms norms), a Fourier position encoding computed from the input's shape
    (full, cumsum, arange, floor division, pow of a scalar, repeat) and a repeat of a dim of size 1."""

    def forward(self, x):  # x: [1, 4, 5, 6]
        normalized = torch.nn.functional.normalize(x, dim=-1)
        grn = x.norm(p=2, dim=(2, 3), keepdim=True)
        mask = torch.zeros(1, x.shape[2], x.shape[3], dtype=torch.bool)
        rows = (~mask).cumsum(1, dtype=torch.float32) / (x.shape[2] + 1e-6)
        dims = torch.arange(x.shape[1], dtype=torch.float32)
        periods = 1000.0 ** (2 * torch.div(dims, 2, rounding_mode="floor") / x.shape[1])
        position = (rows[:, None] / periods[None, :, None, None]).sin().repeat(x.shape[0], 1, 1, 1)
        spread = x.var(dim=1, keepdim=True) + x.var(dim=(2, 3), unbiased=False)[..., None, None]
        return normalized * x.sum(dim=(1, 3), keepdim=True), x * grn + position, x.mean(1, keepdim=True).repeat(
            1, 4, 1, 1) - x * spread


NORM_PASS_OPS = {PowAsMul: ("pow_float",), SumAsMean: ("sum.dim_IntList",),
                 ExpandAsBroadcast: ("expand_copy", "repeat"), VarAsMeans: ("var.correction",),
                 FoldShapeConstants: ("arange", "cumsum", "full", "div.Tensor_mode", "pow.Scalar")}


@pytest.fixture(scope="module")
def edge_norm_patterns():
    from executorch.exir import to_edge

    return to_edge(torch.export.export(NormPatterns(), (randn(1, 4, 5, 6),), strict=False))


def float_powers(edge) -> int:
    """pow.Tensor_Scalar nodes with a float exponent (XNNPACK's pow takes the int 2 only)."""
    return sum("pow.Tensor_Scalar" in str(n.target) and isinstance(n.args[1], float)
               for n in edge.exported_program().graph.nodes if n.op == "call_function")


def outputs_diff(before, after, inputs: torch.Tensor) -> float:
    """Largest difference of the two edge programs' outputs. No guards: torch 2.12.1 writes the guard function of
    a program holding the folded constants with an undefined name (__meta_utils_unknown_tensor); lowering needs
    none."""
    with torch.no_grad():
        want = before.exported_program().module(check_guards=False)(inputs)
        got = after.exported_program().module(check_guards=False)(inputs)
    return max(float((w - g).abs().max()) for w, g in zip(want, got, strict=True))


@pytest.mark.parametrize("edge_pass", NORM_PASS_OPS)
def test_norm_edge_pass_removes_its_pattern_and_keeps_the_output(edge_norm_patterns, edge_pass):
    after = edge_norm_patterns.transform([edge_pass()])
    for op in NORM_PASS_OPS[edge_pass]:
        remaining = float_powers if op == "pow_float" else lambda e, o=op: count(e, o)
        assert remaining(edge_norm_patterns) > 0, op
        assert remaining(after) == 0, op
    assert outputs_diff(edge_norm_patterns, after, randn(1, 4, 5, 6, seed=7)) <= EXACT


@pytest.mark.parametrize("edge_pass", [PowAsMul, SumAsMean, ExpandAsBroadcast, FoldShapeConstants, VarAsMeans,
                                       LargerOperandFirst, UnpaddedAvgPool, SingleTensorCat, SoftmaxOnLastDim,
                                       NearestUpsampleAsBroadcast, CopyAsSource, FinitePoolPadding, AmaxAsMaximum])
def test_norm_edge_pass_leaves_a_vit_without_the_pattern_alone(edge_timm, edge_pass):
    """The ViT (the digits build's kind) has none of these patterns: each pass gives it back node for node."""
    def nodes(edge):
        return [(n.op, str(n.target), str(n.args)) for n in edge.exported_program().graph.nodes]

    assert nodes(edge_timm.transform([edge_pass()])) == nodes(edge_timm)


def test_expand_as_broadcast_keeps_an_expand_no_operator_broadcasts():
    from executorch.exir import to_edge

    class Expands(torch.nn.Module):
        def forward(self, x):  # x: [1, 1, 3]: expanded into a cat, and a repeat of a dim of size 3
            return torch.cat([x.expand(1, 2, 3), x], dim=1), x.repeat(1, 2, 2) + 1.0

    edge = to_edge(torch.export.export(Expands(), (randn(1, 1, 3),), strict=False))
    after = edge.transform([ExpandAsBroadcast()])
    assert (count(after, "expand_copy"), count(after, "repeat")) == (1, 1)


def test_fold_shape_constants_keeps_parameters_and_inputs():
    """Only what depends on neither input nor parameter is folded: a parameter's transpose stays."""
    from executorch.exir import to_edge

    linear = torch.nn.Linear(6, 6)
    edge = to_edge(torch.export.export(torch.nn.Sequential(linear).eval(), (randn(1, 6),), strict=False))
    after = edge.transform([FoldShapeConstants()])
    assert count(after, "permute_copy") == count(edge, "permute_copy") == 1


@pytest.mark.parametrize(("module", "shape", "seed"), [(Patterns, (1, 7, 5, 8), 6), (NormPatterns, (1, 4, 5, 6), 7)],
                         ids=["mobile", "norm"])
def test_xnnpack_takes_every_pattern_and_executorch_runs_it(module, shape, seed):
    """One small lowering with every edge pass: nothing left on portable kernels, the runtime's outputs as eager's."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    from vitq.model.executorch_export import delegation_record, partitioner_reasons, use_venv_flatc

    use_venv_flatc()
    inputs = randn(*shape, seed=seed)
    program = torch.export.export(module(), (inputs,), strict=False)
    with partitioner_reasons() as reasons:
        edge = to_edge_transform_and_lower(program, transform_passes=edge_passes(), partitioner=[XnnpackPartitioner()])
    delegation = delegation_record(edge.exported_program().graph_module, reasons)
    assert delegation["portable_nodes"] == 0, delegation
    got = run_lowered_once(edge.to_executorch().buffer, (inputs,))
    with torch.no_grad():
        want = module()(inputs)
    assert max(float((w - g).abs().max()) for w, g in zip(want, got, strict=True)) <= EXACT


class PositionConv(torch.nn.Module):
    """A 1x1 conv of a Fourier position encoding computed from the input's shape (EdgeNeXt's, XCiT's
    PositionalEncodingFourier), added to the input."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 4, 1)

    def forward(self, x):  # x: [1, 4, H, W]
        dims = torch.arange(x.shape[1], dtype=torch.float32)
        periods = 1000.0 ** (2 * torch.div(dims, 2, rounding_mode="floor") / x.shape[1])
        rows = torch.arange(1, x.shape[2] + 1, dtype=torch.float32)[:, None].repeat(1, x.shape[3])
        return x + self.conv((rows / (x.shape[2] + 1e-6) / periods[:, None, None]).sin()[None])


def test_xnnpack_takes_a_quantized_conv_of_a_folded_position_encoding():
    """In pt2e's dynamically quantized program the literals are buffers (FoldShapeConstants reads their values
    from the program) and the conv's input quantization stays: one delegate, nothing on portable kernels."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    from vitq.model.executorch_export import delegation_record, partitioner_reasons, use_venv_flatc
    from vitq.model.pte_quantization import quantize_for_xnnpack
    from vitq.model.xnnpack_rewrites import program_values

    use_venv_flatc()
    torch.manual_seed(0)
    model, inputs = PositionConv().eval(), randn(1, 4, 3, 5, seed=8)
    program = quantize_for_xnnpack(model, (inputs,), "dynamic_int8")
    assert program_values(program)
    with partitioner_reasons() as reasons:
        edge = to_edge_transform_and_lower(program, transform_passes=edge_passes(program),
                                           partitioner=[XnnpackPartitioner()])
    delegation = delegation_record(edge.exported_program().graph_module, reasons)
    assert (delegation["delegated_subgraphs"], delegation["portable_nodes"]) == (1, 0), delegation
    got = run_lowered_once(edge.to_executorch().buffer, (inputs,))[0]
    with torch.no_grad():
        want = model(inputs)
    assert (got - want).abs().max().item() <= 0.05 * want.abs().max().item()
