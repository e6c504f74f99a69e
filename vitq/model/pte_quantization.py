"""How the ExecuTorch program is quantized: one function per choice, so the .pte export, the candidates a gate picks
from and a per-layer sensitivity search all quantize the same way.

Each strategy turns a model already rewritten by ``xnnpack_rewrites.prepare_for_xnnpack`` into the exported program
that ``to_edge_transform_and_lower`` takes, in a form ExecuTorch 1.3.1's XNNPACK partitioner delegates whole:

- ``none``: float32.
- ``dynamic_int8``: pt2e with XNNPACKQuantizer: int8 weights per output channel, activations quantized at run
  time (pt2e asks for per tensor; XNNPACK's runtime quantizes per token); linear and conv only, and not a conv
  whose input a reshape or permute rearranged (XNNPACK 1.3.1 gets those wrong: REARRANGING).
- ``8da4w``: torchao ``Int8DynamicActivationIntxWeightConfig``: int4 weights in groups of ``group_size`` input
  channels, activations quantized per token at run time; convs as in dynamic_int8. XNNPACK takes int4 groups
  only in multiples of 32 that divide the layer's input width (``_check_per_channel_group_params``), so a Linear
  whose width a group does not divide gets int8 weights per output channel instead (same config, ``PerAxis(0)``).
- ``static_int8``: pt2e with XNNPACKQuantizer, activations quantized with ranges calibrated ahead of time on
  ``calibration`` batches: linear, conv and mul (STATIC_OPERATORS says why not add and cat), except inside
  LayerNorm (LayerNorm4d's variance stays float). bmm, softmax, GELU, add and cat stay float.

``keep_float`` names modules (usually nn.Linear) left in float, for mixed precision by ``layer_sensitivity``.
Nothing here imports vitq beyond the rewrites; arguments are plain values, not recipe objects.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable, Collection, Iterable

import torch

from vitq.model.xnnpack_rewrites import NORMS_4D, fold_joined_biases

# In the order of what each asks of the caller: nothing (float, then int8 decided at run time), a group size,
# calibration images.
STRATEGIES = ("none", "dynamic_int8", "8da4w", "static_int8")
CONV_OPERATORS = (torch.ops.aten.conv2d.default, torch.ops.aten.conv1d.default)
# static_int8 quantizes these (with their fused relu forms). Not add: an int8 residual stream (one scale per tensor)
# made most of the error (tiny ViT: max|dlogit| 0.11 with add, 0.006 without). Not cat: XNNPACKQuantizer's static cat
# (the class token joining the patch tokens) lowers, but ExecuTorch 1.3.1's XNNPACK runtime then fails to init it.
STATIC_OPERATORS = (torch.ops.aten.linear.default, *CONV_OPERATORS, torch.ops.aten.mul.Tensor)
XNNPACK_GROUP_MULTIPLE = 32  # XNNPACK's int4 weight groups: a multiple of 32 input channels
# ExecuTorch 1.3.1's XNNPACK runtime mishandles a dynamically quantized conv whose input was rearranged by a
# reshape or permute (directly, or through elementwise operators): it refuses the program ("Propagating input shapes
# failed": TinyViT, EfficientViT, MobileViT v2) or computes something else than pt2e's arithmetic (MobileViT v1:
# max|dlogit| 5.4e-2 on logits of 0.066, against 1.5e-3 simulated). Those convs stay float in the dynamic
# strategies; a static int8 one (calibrated scale) runs as simulated.
REARRANGING = (torch.ops.aten.reshape.default, torch.ops.aten.view.default, torch.ops.aten._unsafe_view.default,
               torch.ops.aten.permute.default, torch.ops.aten.transpose.int, torch.ops.aten.flatten.using_ints,
               torch.ops.aten.unflatten.int)
# followed upwards from a conv's input, besides operators tagged pointwise: they keep the layout they are given
SAME_LAYOUT = (torch.ops.aten.dropout.default, torch.ops.aten.batch_norm.default, torch.ops.aten.hardswish.default,
               torch.ops.aten.hardswish_.default)
# Which convs the dynamic strategies leave float, from fewest to most: those of a rearranged input (REARRANGING,
# always); also those whose input another operator reads too (CSPNeXt's split, a residual's branch point), where
# ExecuTorch 1.3.1's channels-last pass makes one reader's input NHWC behind the others' back and XNNPACK then
# refuses the program (pytorch/executorch#20376, in no release yet); all of them. executorch_export tries them in
# this order and ships the first program that lowers and runs.
FLOAT_CONVS = ("rearranged", "shared", "all")


def quantize_for_xnnpack(model: torch.nn.Module, example: tuple, strategy: str, *, group_size: int = 32,
                         calibration: Iterable[torch.Tensor] | None = None, keep_float: Collection[str] = (),
                         float_convs: str = FLOAT_CONVS[0]) -> torch.export.ExportedProgram:
    """``model`` (rewritten by prepare_for_xnnpack, not changed here) exported with torch.export (non-strict) for
    ``example`` and quantized per ``strategy``: the program for ``to_edge_transform_and_lower``.

    ``calibration``: image batches for static_int8 (each image is run alone when the example is batch 1).
    ``keep_float``: module names (as ``model.named_modules()`` of this rewritten model gives them) left in float:
    their Linears, and for the pt2e strategies any other operator inside them. ``float_convs``: which convs the
    dynamic strategies leave float (FLOAT_CONVS)."""
    check_strategy(strategy)
    kept = _check_keep_float(model, keep_float)
    if strategy != "none":
        kept |= input_independent_linears(model, example) | vanishing_linears(model)
    if strategy == "8da4w":
        _check_group_size(group_size)
    batches = None
    if strategy == "static_int8":
        batches = _batches(calibration)
        if not batches or not any(batch.shape[0] for batch in batches):
            raise ValueError("static_int8 needs calibration: image batches to measure activation ranges on")
    if strategy == "none":
        return _export_folded(model, example)
    if strategy == "8da4w":  # torchao for the Linears, then pt2e dynamic int8 for the (patch embedding) conv
        linears = _export_folded(quantize_8da4w(model, group_size, kept), example).module()
        return _export(_quantize_pt2e(linears, example, None, kept, CONV_OPERATORS, float_convs), example)
    operators = STATIC_OPERATORS if strategy == "static_int8" else None
    return _export(_quantize_pt2e(_export_folded(model, example).module(), example, batches, kept, operators,
                                  float_convs), example)


def check_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown quantization strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")


def _check_group_size(group_size: int) -> None:
    if group_size <= 0 or group_size % XNNPACK_GROUP_MULTIPLE:
        raise ValueError(f"8da4w group_size {group_size}: XNNPACK takes int4 groups of a positive multiple of "
                         f"{XNNPACK_GROUP_MULTIPLE} input channels")


def _check_keep_float(model: torch.nn.Module, keep_float: Collection[str]) -> frozenset[str]:
    if isinstance(keep_float, str):
        keep_float = (keep_float,)
    names = dict(model.named_modules())
    unknown = sorted(name for name in keep_float if name not in names or not name)
    if unknown:
        raise ValueError(f"keep_float names no submodule of the model: {', '.join(map(repr, unknown))}")
    return frozenset(keep_float)


def input_independent_linears(model: torch.nn.Module, example: tuple) -> frozenset[str]:
    """The Linears whose input is the same whatever the image (found by running the example and a shifted copy):
    an MLP over constant coordinates (SwinV2's continuous position bias, the relative-position ViTs' RelPosMlp).
    Dynamically quantized, such a linear has no kernel ("Missing out variants: quantized_decomposed::..."); left
    float, ExecuTorch folds it into a constant before lowering."""
    seen: dict[str, list[torch.Tensor]] = {}
    hooks = [module.register_forward_pre_hook(functools.partial(_record_input, seen, name))
             for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]
    try:
        with torch.no_grad():
            for shift in (0.0, 1.0):
                model(*(x + shift if isinstance(x, torch.Tensor) and x.is_floating_point() else x for x in example))
    finally:
        for hook in hooks:
            hook.remove()
    return frozenset(name for name, inputs in seen.items()
                     if len(inputs) == 2 and inputs[0].shape == inputs[1].shape and torch.equal(*inputs))


WEIGHT_EPS = 2**-12  # XNNPACKQuantizer's smallest weight scale (its observers' eps): one int8 step at least


def vanishing_linears(model: torch.nn.Module) -> frozenset[str]:
    """The Linears whose every weight is under half XNNPACK's smallest quantization step, so int8 rounds the whole
    layer to zero (BEiT's head, scaled by init_scale 0.001: weights around 2e-5). Left float instead."""
    return frozenset(name for name, module in model.named_modules()
                     if isinstance(module, torch.nn.Linear) and module.weight.numel()
                     and module.weight.detach().abs().max().item() < WEIGHT_EPS / 2)


def _record_input(seen: dict[str, list[torch.Tensor]], name: str, module: torch.nn.Module, args: tuple) -> None:
    if args and isinstance(args[0], torch.Tensor):
        seen.setdefault(name, []).append(args[0].detach().clone())


def _kept(name: str, kept: Collection[str]) -> bool:
    """Whether a module named ``name`` is, or is inside, one of ``kept``."""
    return any(name == k or name.startswith(k + ".") for k in kept)


def _export(model: torch.nn.Module, example: tuple) -> torch.export.ExportedProgram:
    # non-strict: transformers' forward takes keywords
    return torch.export.export(model, tuple(example), strict=False)


def _export_folded(model: torch.nn.Module, example: tuple) -> torch.export.ExportedProgram:
    """The exported program, with biases joined from parameters made constants (fold_joined_biases), re-exported
    only where there were any."""
    program = _export(model, example)
    module = program.module()
    return _export(module, example) if fold_joined_biases(module) else program


def quantize_8da4w(model: torch.nn.Module, group_size: int = 32, keep_float: Collection[str] = ()) -> torch.nn.Module:
    """A copy of ``model`` with torchao int4 grouped weights (int8 per channel where ``group_size`` does not
    divide a Linear's input width) and per-token dynamic int8 activations, except modules in ``keep_float``.
    The copy runs eagerly (simulating the program's arithmetic) and exports as-is."""
    from torchao.quantization import Int8DynamicActivationIntxWeightConfig, PerAxis, PerGroup, quantize_

    quantized = copy.deepcopy(model)

    def grouped(module: torch.nn.Module, name: str) -> bool:
        return (isinstance(module, torch.nn.Linear) and not _kept(name, keep_float)
                and module.in_features % group_size == 0)

    def per_channel(module: torch.nn.Module, name: str) -> bool:
        return (isinstance(module, torch.nn.Linear) and not _kept(name, keep_float)
                and module.in_features % group_size != 0)

    quantize_(quantized, Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4,
                                                               weight_granularity=PerGroup(group_size)),
              filter_fn=grouped)
    quantize_(quantized, Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int8,
                                                               weight_granularity=PerAxis(0)),
              filter_fn=per_channel)
    return quantized


def _quantize_pt2e(module: torch.nn.Module, example: tuple, calibration: list[torch.Tensor] | None,
                   keep_float: Collection[str], operators: Collection | None = None,
                   float_convs: str = FLOAT_CONVS[0]) -> torch.nn.Module:
    """XNNPACKQuantizer + prepare_pt2e / convert_pt2e on an exported module, on ``operators`` (None: every pattern
    the quantizer has): dynamic when ``calibration`` is None (one call on the example records the graph), else
    static with ranges observed on every calibration image."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer.utils import get_module_name_filter

    dynamic = calibration is None
    config = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=dynamic)
    quantizer = XNNPACKQuantizer()
    if operators is None:
        quantizer.set_global(config)
    for op in operators or ():
        quantizer.set_operator_type(op, config)
    if not dynamic:
        for norm in NORMS_4D:
            quantizer.set_module_type(norm, None)
    # set_module_name(name, None) is refused ("not supported yet") in executorch 1.3.1: keep_float is a filter
    inside = [get_module_name_filter(name) for name in keep_float]
    quantizer.set_filter_function(lambda node: not any(within(node) for within in inside)
                                  and not (dynamic and conv_left_float(node, float_convs)))
    prepared = prepare_pt2e(module, quantizer)
    with torch.no_grad():
        if dynamic:
            prepared(*example)
        else:
            for images in _as_example_batches(calibration, example[0].shape[0]):
                prepared(images, *example[1:])
    return convert_pt2e(prepared)


def conv_left_float(node: torch.fx.Node, float_convs: str) -> bool:
    """Whether the dynamic strategies leave ``node``, a conv, float under the rule ``float_convs`` (FLOAT_CONVS)."""
    if node.op != "call_function" or node.target not in CONV_OPERATORS:
        return False
    if float_convs == "all":
        return True
    readers = [user for user in node.args[0].users if user.op == "call_function"]  # not export's input guards
    shared = isinstance(node.args[0], torch.fx.Node) and len(readers) > 1
    return conv_of_rearranged_input(node) or (float_convs == "shared" and shared)


def float_conv_counts(model: torch.nn.Module, example: tuple) -> dict[str, int]:
    """How many convs each FLOAT_CONVS rule leaves float in ``model`` (exported once, not quantized)."""
    nodes = list(_export(model, example).module().graph.nodes)
    return {rule: sum(conv_left_float(node, rule) for node in nodes) for rule in FLOAT_CONVS}


def conv_of_rearranged_input(node: torch.fx.Node) -> bool:
    """Whether ``node`` is a conv whose input a reshape or permute rearranged, directly or through operators that
    keep the layout (REARRANGING says why XNNPACK's dynamic int8 must leave it float)."""
    if node.op != "call_function" or node.target not in CONV_OPERATORS:
        return False
    size = _numel(node.args[0])
    seen: set[torch.fx.Node] = set()
    ahead = [node.args[0]]
    while ahead:
        source = ahead.pop()
        if not isinstance(source, torch.fx.Node) or source in seen or source.op != "call_function":
            continue
        seen.add(source)
        if source.target in REARRANGING and _numel(source) == size:  # the feature map, not a broadcast scale's view
            return True
        if source.target in SAME_LAYOUT or torch.Tag.pointwise in getattr(source.target, "tags", ()):
            ahead.extend(arg for arg in source.args if isinstance(arg, torch.fx.Node))
    return False


def _numel(node: torch.fx.Node) -> int | None:
    value = node.meta.get("val") if isinstance(node, torch.fx.Node) else None
    return value.numel() if isinstance(value, torch.Tensor) else None


def _batches(calibration: Iterable[torch.Tensor] | torch.Tensor | None) -> list[torch.Tensor]:
    """The calibration as a list of batches (one tensor is one batch, not a sequence of images)."""
    if calibration is None:
        return []
    return [calibration] if isinstance(calibration, torch.Tensor) else list(calibration)


def _as_example_batches(batches: Iterable[torch.Tensor], size: int) -> Iterable[torch.Tensor]:
    """The calibration batches cut to the example's batch size (an exported program has its shape fixed)."""
    for batch in batches:
        for start in range(0, batch.shape[0] - size + 1, size):
            yield batch[start:start + size]


def layer_sensitivity(model: torch.nn.Module, calibration: Iterable[torch.Tensor], strategy: str,
                      group_size: int = 32) -> dict[str, float]:
    """SQNR in dB of each nn.Linear's output quantized per ``strategy`` vs its float output, on the calibration
    batches, by module name (as keep_float takes them): low = sensitive, a candidate to keep in float.

    Each layer is measured alone: its quantized copy runs on the float model's input to that layer, so errors
    upstream do not count. Weights are quantized exactly as the strategy does; activations as well, except that
    static_int8's ranges are the min/max of the calibration inputs (pt2e uses a histogram observer). ``none``
    gives inf everywhere."""
    check_strategy(strategy)
    if strategy == "8da4w":
        _check_group_size(group_size)
    batches = [batch for batch in _batches(calibration) if batch.shape[0]]
    if not batches:
        raise ValueError("layer_sensitivity needs calibration: image batches to compare outputs on")
    linears = {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    if strategy == "none":
        return dict.fromkeys(linears, math.inf)
    ranges: dict[str, tuple[float, float]] = {}
    if strategy == "static_int8":
        _observe(model, linears, batches, lambda name, x, y: _widen(ranges, name, x))
    quantized = {name: _quantized_linear(linear, strategy, group_size, ranges.get(name)) for name, linear in
                 linears.items()}
    power = {name: [0.0, 0.0] for name in linears}  # signal, noise

    def measure(name: str, x: torch.Tensor, y: torch.Tensor) -> None:
        noise = quantized[name](x) - y
        power[name][0] += float((y.double() ** 2).sum())
        power[name][1] += float((noise.double() ** 2).sum())

    _observe(model, linears, batches, measure)
    return {name: _decibels(signal, noise) for name, (signal, noise) in power.items()}


def _observe(model: torch.nn.Module, linears: dict[str, torch.nn.Linear], batches: list[torch.Tensor],
             seen: Callable[[str, torch.Tensor, torch.Tensor], None]) -> None:
    """Run the float model on every batch, calling ``seen(name, input, output)`` for each Linear."""
    hooks = [linear.register_forward_hook(lambda _m, args, out, name=name: seen(name, args[0], out))
             for name, linear in linears.items()]
    try:
        with torch.no_grad():
            for batch in batches:
                model(batch)
    finally:
        for hook in hooks:
            hook.remove()


def _widen(ranges: dict[str, tuple[float, float]], name: str, x: torch.Tensor) -> None:
    low, high = ranges.get(name, (0.0, 0.0))  # a quantized range always holds 0
    ranges[name] = (min(low, float(x.min())), max(high, float(x.max())))


def _decibels(signal: float, noise: float) -> float:
    if noise == 0:
        return math.inf
    if signal == 0:
        return -math.inf
    return 10 * math.log10(signal / noise)


def _quantized_linear(linear: torch.nn.Linear, strategy: str, group_size: int,
                      calibrated: tuple[float, float] | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The layer as ``strategy`` computes it, in float: fake-quantized input and weight (8da4w: torchao's own
    quantized copy)."""
    if strategy == "8da4w":
        copied = quantize_8da4w(torch.nn.Sequential(linear), group_size)[0]
        return lambda x: copied(x)
    weight = _fake_quant_per_channel(linear.weight.detach())
    bias = linear.bias

    def run(x: torch.Tensor) -> torch.Tensor:
        if calibrated is None:  # dynamic_int8
            return torch.nn.functional.linear(_fake_quant_per_token(x), weight, bias)
        return torch.nn.functional.linear(_fake_quant_per_tensor(x, *calibrated), weight, bias)

    return run


def _fake_quant_per_channel(weight: torch.Tensor) -> torch.Tensor:
    """XNNPACKQuantizer's weights: symmetric int8 [-127, 127] per output channel (eps 2**-12)."""
    scale = (weight.abs().amax(dim=1) / 127).clamp(min=2**-12)
    return torch.fake_quantize_per_channel_affine(weight, scale, torch.zeros_like(scale, dtype=torch.int32), 0,
                                                  -127, 127)


def _fake_quant_per_token(x: torch.Tensor) -> torch.Tensor:
    """XNNPACK's dynamically quantized activations: pt2e asks for int8 per tensor, but XNNPACK has only per-row
    dynamic quantization (PerTokenDynamicQuant), so the program quantizes each token with its own affine range."""
    low = x.amin(dim=-1, keepdim=True).clamp(max=0)
    high = x.amax(dim=-1, keepdim=True).clamp(min=0)
    scale = ((high - low) / 255).clamp(min=2**-12)
    zero_point = (-128 - torch.round(low / scale)).clamp(-128, 127)
    return (torch.clamp(torch.round(x / scale) + zero_point, -128, 127) - zero_point) * scale


def _fake_quant_per_tensor(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """XNNPACKQuantizer's activations: affine int8 [-128, 127] over a range that holds 0."""
    low, high = min(low, 0.0), max(high, 0.0)
    scale = max((high - low) / 255, 2**-12)
    zero_point = int(max(-128, min(127, -128 - round(low / scale))))
    return torch.fake_quantize_per_tensor_affine(x, scale, zero_point, -128, 127)
