"""What ExecuTorch 1.3.1's XNNPACK gets wrong on timm models outside the eight families (issue 30's sweep), and what
vitq does about it: a bias joined from parameters (BEiT, EVA) folded into a constant, a broadcast scale moved to
the second operand (HGNetV2, CoaT), and dynamically quantized convs the runtime refuses (CSPNeXt, EfficientViT,
EfficientFormerV2) left float until the program runs, each found by trying and recorded."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vitq.model.executorch_export import LoweredProgramFails, run_lowered_once
from vitq.model.pte_quantization import float_conv_counts, quantize_for_xnnpack
from vitq.model.xnnpack_rewrites import (
    LargerOperandFirst,
    SingleTensorCat,
    SoftmaxOnLastDim,
    UnpaddedAvgPool,
    edge_passes,
    prepare_for_xnnpack,
)


class JoinedBias(nn.Module):
    """EVA's and BEiT's attention projection: F.linear with a bias joined from q_bias, a zero buffer and v_bias."""

    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(16, 48, bias=False)
        self.q_bias, self.v_bias = nn.Parameter(torch.randn(16)), nn.Parameter(torch.randn(16))
        self.register_buffer("k_bias", torch.zeros(16), persistent=False)

    def forward(self, x):
        bias = torch.cat((self.q_bias, self.k_bias, self.v_bias))
        return nn.functional.linear(x, weight=self.qkv.weight, bias=bias)


def conv_bn_silu(inputs: int, outputs: int, kernel: int = 1) -> nn.Module:
    return nn.Sequential(nn.Conv2d(inputs, outputs, kernel, padding=kernel // 2, bias=False),
                         nn.BatchNorm2d(outputs), nn.SiLU())


class CrossStage(nn.Module):
    """CSPNeXt's stage in small: one activation read by two convs, a residual around two more, then a cat."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.stem, self.final = conv_bn_silu(3, width, 3), conv_bn_silu(width, width)
        self.short, self.main = conv_bn_silu(width, width // 2), conv_bn_silu(width, width // 2)
        self.block = nn.Sequential(conv_bn_silu(width // 2, width // 2, 3), conv_bn_silu(width // 2, width // 2, 3))
        self.head = nn.Linear(width, 10)

    def forward(self, x):
        x = self.stem(x)
        main = self.main(x)
        main = main + self.block(main)
        return self.head(self.final(torch.cat([self.short(x), main], 1)).mean((2, 3)))


def lowered(model: nn.Module, example: tuple, strategy: str, **kwargs) -> tuple[bytes, dict]:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    from vitq.model.executorch_export import delegation_record, use_venv_flatc

    use_venv_flatc()
    program = quantize_for_xnnpack(prepare_for_xnnpack(model), example, strategy, **kwargs)
    edge = to_edge_transform_and_lower(program, transform_passes=edge_passes(program),
                                      partitioner=[XnnpackPartitioner()])
    return edge.to_executorch().buffer, delegation_record(edge.exported_program().graph_module, {})


def assert_lowers_whole(model: nn.Module, example: tuple, strategy: str = "dynamic_int8",
                        tolerance: float | None = None) -> None:
    """Lowered with ``strategy``, nothing stays on portable kernels and ExecuTorch's output is eager's within
    ``tolerance`` of its largest value (1e-5 for the float program, 5 % for a quantized one)."""
    program, delegation = lowered(model, example, strategy)
    assert delegation["portable_nodes"] == 0, delegation
    with torch.no_grad():
        want = model(*example)
    tolerance = tolerance if tolerance is not None else 1e-5 if strategy == "none" else 0.05
    assert (run_lowered_once(program, example)[0] - want).abs().max().item() <= tolerance * want.abs().max().item()


@pytest.mark.heavy
@pytest.mark.parametrize("strategy", ["none", "dynamic_int8"])
def test_a_bias_joined_from_parameters_is_folded_and_xnnpack_takes_the_linear(strategy):
    """Without the fold the float linear stays on portable kernels and the quantized one has no kernel at all
    ("Missing out variants: quantized_decomposed::...")."""
    torch.manual_seed(0)
    model, example = JoinedBias().eval(), (torch.randn(1, 5, 16),)
    assert_lowers_whole(model, example, strategy)


def test_larger_operand_first_puts_a_broadcast_scale_second_and_computes_the_same():
    from executorch.exir import to_edge

    class Scaled(nn.Module):  # HGNetV2's learnable affine block
        def __init__(self):
            super().__init__()
            self.scale, self.bias = nn.Parameter(torch.tensor([1.5])), nn.Parameter(torch.tensor([0.25]))

        def forward(self, x):
            return self.scale * x + self.bias

    example = (torch.randn(1, 4, 5, 6),)
    edge = to_edge(torch.export.export(Scaled().eval(), example, strict=False))
    after = edge.transform([LargerOperandFirst()])
    operators = [n for n in after.exported_program().graph.nodes if n.op == "call_function"]
    assert [tuple(n.args[0].meta["val"].shape) for n in operators] == [(1, 4, 5, 6)] * 2
    with torch.no_grad():
        assert torch.equal(after.exported_program().module()(*example), edge.exported_program().module()(*example))


@pytest.mark.heavy
def test_convs_the_runtime_refuses_stay_float_until_the_program_runs():
    """ExecuTorch 1.3.1 lowers CrossStage with every conv dynamically quantized, then its runtime refuses it; with
    the convs whose input another operator reads too left float it runs, close to eager. When a release fixes
    pytorch/executorch#20376 the first assertion fails: FLOAT_CONVS can then go."""
    torch.manual_seed(0)
    model, example = CrossStage().eval(), (torch.randn(1, 3, 32, 32),)
    counts = float_conv_counts(prepare_for_xnnpack(model), example)
    assert counts == {"rearranged": 0, "shared": 3, "all": 6}
    refused, _ = lowered(model, example, "dynamic_int8")
    with pytest.raises(LoweredProgramFails, match="xnn_status_invalid_parameter"):
        run_lowered_once(refused, example)
    program, delegation = lowered(model, example, "dynamic_int8", float_convs="shared")
    assert delegation["portable_nodes"] == 0
    with torch.no_grad():
        want = model(*example)
    assert (run_lowered_once(program, example)[0] - want).abs().max().item() <= 0.05 * want.abs().max().item()


@pytest.mark.heavy
def test_export_executorch_records_the_convs_it_left_float(tmp_path):
    """vitq's own export finds the rule by trying and says so in the delegation record (the manifest's)."""
    from vitq.model.executorch_export import export_executorch
    from vitq.recipe import load_recipe

    from conftest import write_recipe

    recipe = load_recipe(write_recipe(tmp_path, "csp", (
        "model: {source: timm, name: resnet10t, kwargs: {num_classes: 10}}\nweights: {random: {seed: 0}}\n"
        "preprocess: {resize: 36, crop: 32, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5]}\nsamples: photos\n")))
    torch.manual_seed(0)
    program, delegation = export_executorch(recipe, CrossStage().eval(), "dynamic_int8")
    assert delegation["float_convs"]["rule"] == "shared", delegation.get("float_convs")
    assert delegation["float_convs"]["convs"] == 3
    assert "xnn_status_invalid_parameter" in delegation["float_convs"]["why"]
    assert run_lowered_once(program, (torch.randn(1, 3, 32, 32),))[0].shape == (1, 10)


def test_a_runtime_crash_is_a_refusal_not_the_end_of_the_build(monkeypatch):
    """The trial runs in a process of its own: a crash there (HGNetV2 aborted ExecuTorch 1.3.1's runtime) is
    LoweredProgramFails naming the signal."""
    monkeypatch.setattr("sys.executable", _crashing_python())
    with pytest.raises(LoweredProgramFails, match=r"crashed \(SIGSEGV\)"):
        run_lowered_once(b"any", (torch.zeros(1),))


def _crashing_python() -> str:
    """A stand-in interpreter that dies of SIGSEGV, as the runtime did."""
    import os
    import stat
    import tempfile

    path = os.path.join(tempfile.mkdtemp(), "python")
    with open(path, "w") as script:
        script.write("#!/bin/sh\nkill -SEGV $$\n")
    os.chmod(path, stat.S_IRWXU)
    return path


class DenseTransition(nn.Module):
    """DenseNet's two leftovers: a block's first layer joining a list of one tensor, and a transition's unpadded
    average pool (count_include_pad=True by default); ResNeSt's padded pool; a ceil-mode pool that stays as it is."""

    def forward(self, x):  # x: [1, 4, 7, 7]
        joined = torch.cat([x], 1)
        return (nn.functional.avg_pool2d(joined, 2, 2), nn.functional.avg_pool2d(x, 3, 1, padding=1),
                nn.functional.avg_pool2d(x, 2, 2, ceil_mode=True))


def test_densenets_single_cat_and_unpadded_pool_become_what_xnnpack_takes():
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge, to_edge_transform_and_lower

    from vitq.model.executorch_export import delegation_record, partitioner_reasons, use_venv_flatc

    use_venv_flatc()
    example = (torch.randn(1, 4, 7, 7),)
    program = torch.export.export(DenseTransition().eval(), example, strict=False)
    edge = to_edge(program)
    after = edge.transform([SingleTensorCat(), UnpaddedAvgPool()])
    nodes = [n for n in after.exported_program().graph.nodes if n.op == "call_function"]
    assert not [n for n in nodes if "cat" in str(n.target)]
    assert [bool(n.args[5]) if len(n.args) > 5 else True for n in nodes if "avg_pool2d" in str(n.target)] == [
        False, False, True]
    assert sum("constant_pad_nd" in str(n.target) for n in nodes) == 1
    with torch.no_grad():
        for want, got in zip(edge.exported_program().module()(*example), after.exported_program().module()(*example),
                             strict=True):
            assert torch.equal(want, got)
    with partitioner_reasons() as reasons:
        lowered = to_edge_transform_and_lower(program, transform_passes=edge_passes(program),
                                              partitioner=[XnnpackPartitioner()])
    left = delegation_record(lowered.exported_program().graph_module, reasons)["portable_operators"]
    assert left == {"aten_avg_pool2d_default": 1}, left  # the ceil-mode one: XNNPACK refuses it


class Outlier(nn.Module):
    """A conv whose input has one channel 1e4 times the others (which it does not read): dynamically quantized
    with one scale per tensor, the channels it reads round to nothing, and its program computes something else."""

    def __init__(self):
        super().__init__()
        self.gain, self.conv, self.head = nn.Conv2d(3, 3, 1), nn.Conv2d(3, 8, 3, padding=1), nn.Linear(8, 10)
        with torch.no_grad():
            self.gain.weight.copy_(torch.diag(torch.tensor([1e4, 1.0, 1.0])).view(3, 3, 1, 1))
            self.gain.bias.zero_()
            self.conv.weight[:, 0] = 0.0
            self.conv.bias.zero_()
            self.head.bias.zero_()

    def forward(self, x):
        return self.head(self.conv(self.gain(x)).mean((2, 3)))


@pytest.mark.heavy
def test_a_program_off_the_model_on_the_example_is_rebuilt_with_float_convs(tmp_path):
    """Not only a refusal: a dynamic program whose logits are more than 10 % off the model's on the example is
    rebuilt with more convs float, and the record says why."""
    from vitq.model.executorch_export import export_executorch
    from vitq.recipe import load_recipe

    from conftest import write_recipe

    recipe = load_recipe(write_recipe(tmp_path, "outlier", (
        "model: {source: timm, name: resnet10t, kwargs: {num_classes: 10}}\nweights: {random: {seed: 0}}\n"
        "preprocess: {resize: 36, crop: 32, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5]}\nsamples: photos\n")))
    torch.manual_seed(0)
    model = Outlier().eval()
    program, delegation = export_executorch(recipe, model, "dynamic_int8")
    assert delegation["float_convs"]["rule"] == "all", delegation.get("float_convs")
    assert "differ from the model's" in delegation["float_convs"]["why"]
    example = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        want = model(example)
    assert (run_lowered_once(program, (example,))[0] - want).abs().max().item() <= 0.01 * want.abs().max().item()


class SplitAttention(nn.Module):
    """SKNet's and ResNeSt's softmax over the branches (dim 1, rank 5 and 4), CoaT's over the tokens (dim 2)."""

    def forward(self, x):  # x: [1, 2, 3, 4, 5]
        return x.softmax(1), x[0].softmax(1), x[0].softmax(-2)


def test_a_softmax_over_another_dim_than_the_last_is_moved_there_and_xnnpack_takes_it():
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge, to_edge_transform_and_lower

    from vitq.model.executorch_export import delegation_record, partitioner_reasons, use_venv_flatc

    use_venv_flatc()
    example = (torch.randn(1, 2, 3, 4, 5),)
    program = torch.export.export(SplitAttention().eval(), example, strict=False)
    edge = to_edge(program)
    after = edge.transform([SoftmaxOnLastDim()])
    softmaxes = [n for n in after.exported_program().graph.nodes if "_softmax" in str(n.target)]
    assert [n.args[1] for n in softmaxes] == [4, 3, 3]
    with torch.no_grad():
        for want, got in zip(edge.exported_program().module()(*example), after.exported_program().module()(*example),
                             strict=True):
            assert (want - got).abs().max().item() <= 1e-6
    with partitioner_reasons() as reasons:
        lowered = to_edge_transform_and_lower(program, transform_passes=edge_passes(program),
                                              partitioner=[XnnpackPartitioner()])
    assert delegation_record(lowered.exported_program().graph_module, reasons)["portable_nodes"] == 0


class FuseLayer(nn.Module):
    """HRNet's fuse layer in small: a lower-resolution branch through a 1x1 conv, upsampled by nearest neighbour
    (by 2, and by 3 and 2 through interpolate's size), added to the higher-resolution one."""

    def __init__(self):
        super().__init__()
        self.stem, self.low, self.reduce = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, 2, 1), nn.Conv2d(8, 8, 1)
        self.up, self.head = nn.Upsample(scale_factor=2, mode="nearest"), nn.Linear(8, 10)

    def forward(self, x):  # x: [1, 3, 8, 12]
        high = self.stem(x)
        low = self.reduce(self.low(high))
        wide = nn.functional.interpolate(low[:, :, :2, :3], size=(6, 6), mode="nearest")
        return self.head((high + self.up(low)).mean((2, 3)) + wide.mean((2, 3)))


@pytest.mark.heavy
@pytest.mark.parametrize("strategy", ["dynamic_int8"])  # the float program takes the same passes
def test_nearest_upsampling_becomes_a_broadcast_and_xnnpack_takes_it(strategy):
    from executorch.exir import to_edge

    from vitq.model.xnnpack_rewrites import NearestUpsampleAsBroadcast

    torch.manual_seed(0)
    model, example = FuseLayer().eval(), (torch.randn(1, 3, 8, 12),)
    edge = to_edge(torch.export.export(model, example, strict=False))
    after = edge.transform([NearestUpsampleAsBroadcast()])
    assert not [n for n in after.exported_program().graph.nodes if "upsample" in str(n.target)]
    assert_lowers_whole(model, example, strategy)


class WholeAssignment(nn.Module):
    """MViTv2's relative-position term without a class token: an in-place assignment to all of the attention."""

    def forward(self, x, rel):  # x: [1, 2, 4, 4], rel: [1, 2, 4, 1]
        attn = x @ x.transpose(-2, -1)
        attn[:, :, 0:, 0:] = attn[:, :, 0:, 0:] + rel
        return attn.softmax(-1)


def test_a_copy_over_a_whole_tensor_is_its_source_and_xnnpack_takes_the_rest():
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    from vitq.model.executorch_export import delegation_record, partitioner_reasons, use_venv_flatc

    use_venv_flatc()
    example = (torch.randn(1, 2, 4, 4), torch.randn(1, 2, 4, 1))
    program = torch.export.export(WholeAssignment().eval(), example, strict=False)
    with partitioner_reasons() as reasons:
        lowered = to_edge_transform_and_lower(program, transform_passes=edge_passes(program),
                                              partitioner=[XnnpackPartitioner()])
    assert delegation_record(lowered.exported_program().graph_module, reasons)["portable_nodes"] == 0
    want = WholeAssignment()(*example)
    got = run_lowered_once(lowered.to_executorch().buffer, example)[0]
    assert (got - want).abs().max().item() <= 1e-6


class BiasTable(nn.Module):
    """LeViT's, TinyViT's and GC ViT's attention bias: a table of parameters gathered at a buffer's indices."""

    def __init__(self, tokens: int = 9, heads: int = 2):
        super().__init__()
        self.qkv, self.head = nn.Linear(8, 3 * 8), nn.Linear(8, 10)
        self.table = nn.Parameter(torch.randn(2 * tokens - 1, heads))
        offsets = torch.arange(tokens)[:, None] - torch.arange(tokens)[None, :] + tokens - 1
        self.register_buffer("index", offsets.reshape(-1), persistent=False)
        self.heads, self.tokens = heads, tokens

    def forward(self, x):  # x: [1, tokens, 8]
        q, k, v = self.qkv(x).reshape(1, -1, 3, self.heads, 8 // self.heads).permute(2, 0, 3, 1, 4)
        bias = self.table[self.index].view(self.tokens, self.tokens, self.heads).permute(2, 0, 1)  # timm RelPosBias
        attn = (q @ k.transpose(-2, -1) + bias).softmax(-1)
        return self.head((attn @ v).transpose(1, 2).reshape(1, -1, 8).mean(1))


@pytest.mark.heavy
@pytest.mark.parametrize("strategy", ["dynamic_int8"])  # the float program takes the same passes
def test_a_gathered_bias_table_is_folded_and_xnnpack_takes_the_attention(strategy):
    torch.manual_seed(0)
    model, example = BiasTable().eval(), (torch.randn(1, 9, 8),)
    assert_lowers_whole(model, example, strategy)


class SamePaddedPool(nn.Module):
    """timm's MaxPool2dSame (the ResNetV2 hybrids' stem): a -inf pad on one side, then a max pool."""

    def __init__(self):
        super().__init__()
        self.conv, self.head = nn.Conv2d(3, 8, 3), nn.Linear(8, 10)

    def forward(self, x):  # x: [1, 3, 10, 10]
        padded = nn.functional.pad(self.conv(x), (0, 1, 0, 1), value=-float("inf"))
        return self.head(nn.functional.max_pool2d(padded, 3, 2).mean((2, 3)))


@pytest.mark.heavy
@pytest.mark.parametrize("strategy", ["dynamic_int8"])  # the float program takes the same passes
def test_a_minus_infinity_pad_before_a_max_pool_serializes(strategy):
    """Without FinitePoolPadding the .pte does not serialize at all: flatc cannot parse -inf."""
    torch.manual_seed(0)
    model, example = SamePaddedPool().eval(), (torch.randn(1, 3, 10, 10),)
    assert_lowers_whole(model, example, strategy)


@pytest.mark.heavy
@pytest.mark.parametrize("strategy", ["dynamic_int8"])  # the float program takes the same passes
def test_a_relative_position_mlp_is_read_from_a_buffer_and_xnnpack_takes_the_rest(strategy):
    """The relative-position ViTs' shared bias, an MLP over constant coordinates: dynamically quantized as it was,
    its linear had no kernel at all ("Missing out variants: quantized_decomposed::...")."""
    import timm

    from vitq.model.xnnpack_rewrites import FoldedRelativePositionBias

    torch.manual_seed(0)
    model = timm.create_model("vit_srelpos_small_patch16_224", pretrained=False, img_size=32, patch_size=8,
                              embed_dim=48, depth=1, num_heads=3, num_classes=10).eval()
    assert isinstance(prepare_for_xnnpack(model).shared_rel_pos, FoldedRelativePositionBias)
    example = (torch.randn(1, 3, 32, 32),)
    assert_lowers_whole(model, example, strategy)


@pytest.mark.heavy
def test_a_folded_conv_weight_keeps_every_shape_after_it_static():
    """The ResNetV2 hybrids' weight-standardized stem conv: its weight, computed from the parameter with batch_norm,
    is folded into a constant. As a plain tensor it got symbolic sizes in ExportPass's retrace, every shape after
    the conv followed, and the partitioner refused the token slices ("Expecting non-zero, int values")."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_r_s16_p8_224", pretrained=False, img_size=64, depth=1, num_classes=10).eval()
    example = (torch.randn(1, 3, 64, 64),)
    assert_lowers_whole(model, example, "none", 1e-4)


class MaskUnitPool(nn.Module):
    """Hiera's query pooling: the tokens of each 2x2 unit side by side, reduced by amax (and one keepdim amax)."""

    def __init__(self):
        super().__init__()
        self.qkv, self.head = nn.Linear(8, 8), nn.Linear(8, 10)

    def forward(self, x):  # x: [1, 16, 8]
        q = self.qkv(x).view(1, 2, 4, -1, 4).amax(dim=2)
        return self.head((q.reshape(1, -1, 8) + q.reshape(1, -1, 8).amax(1, keepdim=True)).mean(1))


@pytest.mark.heavy
def test_an_amax_over_a_short_dim_becomes_maximums_and_xnnpack_takes_it():
    torch.manual_seed(0)
    model, example = MaskUnitPool().eval(), (torch.randn(1, 16, 8),)
    assert_lowers_whole(model, example)


@pytest.mark.heavy
def test_linears_of_constant_coordinates_stay_float_and_fold_away():
    """SwinV2's continuous position bias: an MLP over a constant table of log coordinates, computed inside forward.
    Dynamically quantized its linears had no kernel ("Missing out variants"); found by running the model on two
    images, they stay float and ExecuTorch folds them into a constant."""
    import timm

    from vitq.model.pte_quantization import input_independent_linears

    torch.manual_seed(0)
    model = timm.create_model("swinv2_tiny_window8_256", pretrained=False, img_size=32, window_size=4, embed_dim=24,
                              depths=(1, 1), num_heads=(1, 2), num_classes=10).eval()
    example = (torch.randn(1, 3, 32, 32),)
    constant = input_independent_linears(prepare_for_xnnpack(model), example)
    assert constant and all("cpb_mlp" in name for name in constant), constant
    assert_lowers_whole(model, example)


class TinyHead(nn.Module):
    """BEiT's head with random weights (std 0.02 times init_scale 0.001): every weight under XNNPACK's smallest step."""

    def __init__(self):
        super().__init__()
        self.body, self.head = nn.Linear(16, 16), nn.Linear(16, 10)
        with torch.no_grad():
            self.head.weight.mul_(1e-4)
            self.head.bias.zero_()

    def forward(self, x):  # x: [1, 4, 16]
        return self.head(self.body(x).mean(1))


@pytest.mark.heavy
def test_a_linear_int8_would_round_to_zero_stays_float():
    from vitq.model.pte_quantization import vanishing_linears

    torch.manual_seed(0)
    model, example = TinyHead().eval(), (torch.randn(1, 4, 16),)
    assert vanishing_linears(model) == {"head"}
    assert_lowers_whole(model, example)
