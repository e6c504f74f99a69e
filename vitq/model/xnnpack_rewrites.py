"""Rewrites that let ExecuTorch 1.3.1's XNNPACK delegate take a whole ViT, where a third of DeiT-Tiny's graph
stayed on portable kernels (668/1010 nodes delegated, in 62 islands).

XNNPACK there has no LayerNorm, squeeze, expand, select, where or any, and its mean only averages a 4-D tensor
over dims [2, 3] with keepdim. So before torch.export the model computes the same thing with operators it has:
plain attention instead of scaled_dot_product_attention (whose export brings _safe_softmax's eq/any/where), no
all-zero attention mask (transformers), one q/k/v linear (transformers; three that share a dynamically quantized
input cut the delegate), LayerNorm as 4-D means. On the edge graph, before partitioning, the shape-only leftovers
become views (squeeze, the class token's select) or disappear (expands that change nothing).

The mobile families (issue 21) add: LayerNorm over NCHW's channels (timm LayerNorm2d) and GroupNorm as 4-D means
too, FastViT's train-time branches folded (timm's reparameterize_model), Swin's relative position bias read from a
buffer, MobileViT v2's context sum as a mean; on the edge graph split as slices, means over other dims or ranks as
4-D means, strided slices as pad + view + slice, and torch.roll (Swin's shifted windows) as two slices and a cat.

Issue 30 (XCiT, EdgeNeXt, ConvNeXt V2) adds, on the edge graph: pow by 2.0 / 0.5 as a multiply / sqrt and sum as
a scaled mean (F.normalize, torch.norm), expand or repeat into a broadcasting operator dropped, and what depends on
the input's fixed shape alone (Fourier position encodings from arange, cumsum, div, full) folded into constants.

The rest of issue 30's sweep adds: bias-less and norm-with-activation subclasses of the norms, timm's argument-less
bias methods (get_bias) read from a buffer; on the edge graph nearest upsampling as a broadcast, a whole-tensor copy
as its source, a -inf pad before max pools as float32's lowest value (flatc cannot parse -inf), a short amax as
maximums, gathers of parameters folded, and folded constants kept at static sizes.

Use: ``prepare_for_xnnpack(model)`` before torch.export, ``transform_passes=edge_passes()`` in
``to_edge_transform_and_lower``. Of vitq, only vitq.model.attention (which the ONNX export shares) is imported."""

from __future__ import annotations

import copy
import functools
import math

import torch
from executorch.exir.dialects._ops import ops as exir_ops
from executorch.exir.pass_base import ExportPass

from vitq.model.attention import unfused_attention, unmasked_eager_attention

EDGE = exir_ops.edge.aten
MAX_AMAX = 8  # AmaxAsMaximum: at most this many slices (7 maximums) per reduction
MAX_POOLS = (EDGE.max_pool2d_with_indices.default, EDGE.max_pool2d.default)
SQUEEZES = (EDGE.squeeze_copy.default, EDGE.squeeze_copy.dim, EDGE.squeeze_copy.dims, EDGE.unsqueeze_copy.default)
class FusedQkvAttention(torch.nn.Module):
    """transformers' ViTAttention with q, k and v projected by one linear, as timm does: XNNPACK's partitioner
    ends a delegate after three dynamically quantized linears that share one input (they form one group, which it
    cannot merge with users it has not merged yet), and one GEMM beats three."""

    def __init__(self, attention: torch.nn.Module):
        super().__init__()
        self.heads, self.head_dim = attention.num_attention_heads, attention.head_dim
        self.scaling, self.attention_dropout = attention.scaling, attention.attention_dropout
        projections = (attention.q_proj, attention.k_proj, attention.v_proj)
        biased = projections[0].bias is not None
        self.qkv = torch.nn.Linear(projections[0].in_features, sum(p.out_features for p in projections), bias=biased)
        with torch.no_grad():
            self.qkv.weight.copy_(torch.cat([p.weight for p in projections]))
            if biased:
                self.qkv.bias.copy_(torch.cat([p.bias for p in projections]))
        self.o_proj = attention.o_proj

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs):
        batch, tokens, _ = hidden_states.shape
        qkv = self.qkv(hidden_states).reshape(batch, tokens, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        query, key, value = qkv.unbind(0)
        dropout = self.attention_dropout if self.training else 0.0
        out, weights = unmasked_eager_attention(self, query, key, value, attention_mask, self.scaling, dropout)
        return self.o_proj(out.reshape(batch, tokens, -1)), weights


def fused_qkv_projections(model: torch.nn.Module) -> torch.nn.Module:
    """Every transformers ViTAttention becomes a FusedQkvAttention with the same weights. In place; returns the
    model."""
    return _replace_modules(model, "ViTAttention", "q_proj", FusedQkvAttention)


def _replace_modules(model: torch.nn.Module, class_name: str, attribute: str, make) -> torch.nn.Module:
    """Every submodule of class ``class_name`` that has ``attribute`` (the library version we rewrite) becomes
    ``make(submodule)``. In place; returns the model."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child).__name__ == class_name and hasattr(child, attribute):
                setattr(parent, name, make(child))
    return model


class LayerNorm4d(torch.nn.Module):
    """LayerNorm over the last dim as means of a [N, 1, C, 1] view: the only mean XNNPACK lowers (global average
    pooling) reduces dims [2, 3] of a 4-D tensor, and with one channel its NHWC layout is the same memory."""

    def __init__(self, norm: torch.nn.Module):
        super().__init__()
        self.eps = norm.eps
        self.weight = norm.weight  # shared, not copied: the rewrite replaces the module in place
        self.bias = norm.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = _normalized(x.reshape(-1, 1, x.shape[-1], 1), self.eps).reshape(x.shape)
        if self.weight is not None:
            out = out * self.weight
        if self.bias is not None:
            out = out + self.bias
        return out


def _normalized(flat: torch.Tensor, eps: float) -> torch.Tensor:
    """(x - mean) / sqrt(var + eps) of each [1, K, 1] row of a [M, 1, K, 1] tensor, with XNNPACK's 4-D means."""
    centered = flat - flat.mean(dim=(2, 3), keepdim=True)
    variance = (centered * centered).mean(dim=(2, 3), keepdim=True)
    return centered * torch.rsqrt(variance + eps)


class ChannelLayerNorm4d(LayerNorm4d):
    """timm's LayerNorm2d (LayerNorm over the channels of NCHW, TinyViT, EfficientFormer, ConvNeXt) as LayerNorm4d
    between the same two permutes: it is an nn.LayerNorm subclass, but normalizes dim 1, not the last."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class GroupNorm4d(torch.nn.Module):
    """nn.GroupNorm (MobileViT v2's GroupNorm1: one group, a LayerNorm over C, H and W) as 4-D means of a
    [N * groups, 1, C / groups * H * W, 1] view; XNNPACK has no group_norm."""

    def __init__(self, norm: torch.nn.GroupNorm):
        super().__init__()
        self.groups, self.eps = norm.num_groups, norm.eps
        self.weight = norm.weight
        self.bias = norm.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = _normalized(x.reshape(x.shape[0] * self.groups, 1, -1, 1), self.eps).reshape(x.shape)
        affine = (1, -1) + (1,) * (x.dim() - 2)  # per channel
        if self.weight is not None:
            out = out * self.weight.reshape(affine)
        if self.bias is not None:
            out = out + self.bias.reshape(affine)
        return out


LAST_DIM_NORMS = ("LayerNorm",)  # torch's and timm's (timm.layers.LayerNorm: F.layer_norm over the last dim)
CHANNEL_NORMS = ("LayerNorm2d",)  # timm.layers.LayerNorm2d: permute to NHWC, F.layer_norm, permute back
GROUP_NORMS = ("GroupNorm", "GroupNorm1")  # torch's and timm's: F.group_norm
NORM_ACTS = {"LayerNormAct": "LayerNorm", "LayerNormAct2d": "LayerNorm2d", "GroupNormAct": "GroupNorm",
             "GroupNorm1Act": "GroupNorm"}  # timm.layers.norm_act: the norm, then self.drop and self.act
NORMS_4D = (LayerNorm4d, ChannelLayerNorm4d, GroupNorm4d)  # what the rewrites put in the norms' place


def layer_norms_as_4d_means(model: torch.nn.Module) -> torch.nn.Module:
    """Every LayerNorm over the last dim becomes a LayerNorm4d, every timm LayerNorm2d (over NCHW's channels) a
    ChannelLayerNorm4d and every nn.GroupNorm a GroupNorm4d, with the same weight, bias and eps (XNNPACK has no
    LayerNorm or GroupNorm). In place; returns the model (or its replacement, when the model itself is a norm)."""
    if (replacement := _as_4d_means(model)) is not None:
        return replacement
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if (replacement := _as_4d_means(child)) is not None:
                setattr(parent, name, replacement)
    return model


def _as_4d_means(module: torch.nn.Module) -> torch.nn.Module | None:
    """The 4-D-means module that computes what ``module`` computes, or None. Matched by the name of the class whose
    forward runs, not isinstance: timm's LayerNorm2d is an nn.LayerNorm that normalizes another dim, and subclasses
    that only drop the bias (PoolFormerV2's GroupNorm1NoBias, LayerNorm2dNoBias) run their parent's forward. timm's
    norm-and-activation layers (NORM_ACTS) become the norm followed by their own dropout and activation."""
    kind = _forward_owner(module)
    base = NORM_ACTS.get(kind, kind)
    norm = None
    if isinstance(module, torch.nn.LayerNorm) and len(module.normalized_shape) == 1:
        if base in LAST_DIM_NORMS:
            norm = LayerNorm4d(module)
        elif base in CHANNEL_NORMS:
            norm = ChannelLayerNorm4d(module)
    if isinstance(module, torch.nn.GroupNorm) and base in GROUP_NORMS:
        norm = GroupNorm4d(module)
    if norm is not None and kind in NORM_ACTS:
        return torch.nn.Sequential(norm, module.drop, module.act)
    return norm


def _forward_owner(module: torch.nn.Module) -> str:
    """The name of the nearest class in the module's MRO that defines forward."""
    return next(cls.__name__ for cls in type(module).__mro__ if "forward" in vars(cls))


class LinearSelfAttentionMeans(torch.nn.Module):
    """timm's MobileViT v2 LinearSelfAttention (same submodules) with its context vector, a sum over the patches,
    as their mean times their number, and without the expand_as before the product (a broadcast computes the same):
    XNNPACK has neither sum nor expand, and MeanAs4d lowers the mean. The softmax runs on a 3-D view (see forward).
    Cross attention (given x_prev) runs timm's own code."""

    def __init__(self, attention: torch.nn.Module):
        super().__init__()
        self.embed_dim = attention.embed_dim
        self.qkv_proj, self.attn_drop = attention.qkv_proj, attention.attn_drop
        self.out_proj, self.out_drop = attention.out_proj, attention.out_drop
        self._cross_attention = type(attention)._forward_cross_attn

    def forward(self, x: torch.Tensor, x_prev: torch.Tensor | None = None) -> torch.Tensor:
        if x_prev is not None:
            return self._cross_attention(self, x, x_prev)
        query, key, value = self.qkv_proj(x).split([1, self.embed_dim, self.embed_dim], dim=1)  # [B, 1|d, P, N]
        # softmax over N of a 3-D view: XNNPACK runs a 4-D tensor that a conv made in NHWC, and its softmax takes
        # the last dim in memory, there C (executorch 1.3.1 tags no softmax as layout-sensitive): wrong numbers
        scores = torch.softmax(query.reshape(query.shape[0], -1, query.shape[-1]), dim=-1).reshape(query.shape)
        context = (key * self.attn_drop(scores)).mean(dim=-1, keepdim=True) * float(x.shape[-1])  # float: no cast
        return self.out_drop(self.out_proj(torch.relu(value) * context))


def linear_self_attention_means(model: torch.nn.Module) -> torch.nn.Module:
    """Every timm LinearSelfAttention (MobileViT v2) becomes a LinearSelfAttentionMeans. In place; returns the
    model."""
    return _replace_modules(model, "LinearSelfAttention", "qkv_proj", LinearSelfAttentionMeans)


def reparameterized_branches(model: torch.nn.Module) -> torch.nn.Module:
    """A model with train-time branches that fold into one conv for inference (FastViT's MobileOne blocks and
    RepMixers: conv + BN branches summed, identity as ``0 + x``) folded with timm's own reparameterize_model, as
    timm and Apple ship them for inference: each ``0 +`` otherwise exports as an int64 constant cast to float, a
    portable node (XNNPACK takes no dtype conversion), and one conv beats three. In place; returns the model."""
    if not any(callable(getattr(m, "reparameterize", None)) for m in model.modules()):
        return model
    from timm.models import reparameterize_model

    return reparameterize_model(model, inplace=True)


BIAS_METHODS = ("_get_rel_pos_bias", "get_bias")  # timm: Swin's and BEiT's attention; RelPosBias, RelPosMlp, ...


class FoldedRelativePositionBias:
    """Mixed into a timm module whose relative position bias comes from weights alone (Swin's and BEiT's window
    attention, timm.layers' RelPosBias and RelPosMlp: a gather of the bias table by a constant index, or an MLP over
    constant coordinates): the bias, the same for every input, is read from a buffer computed once. As computed, it
    left index.Tensor and int64 views on portable kernels, and a dynamically quantized MLP of a constant that no
    kernel runs ("Missing out variants": the relative-position ViTs)."""

    def _get_rel_pos_bias(self) -> torch.Tensor:
        return self.folded_rel_pos_bias

    def get_bias(self) -> torch.Tensor:
        return self.folded_rel_pos_bias


def folded_relative_position_biases(model: torch.nn.Module) -> torch.nn.Module:
    """Every module with a relative position bias read through an argument-less BIAS_METHODS method that reads its
    parameters reads it from a buffer instead (FoldedRelativePositionBias). In place; returns the model."""
    for module in list(model.modules()):
        method = next((m for m in BIAS_METHODS if callable(getattr(module, m, None))), None)
        if method is None or isinstance(module, FoldedRelativePositionBias) or next(module.parameters(), None) is None \
                or getattr(module, "relative_position_bias_table", True) is None:  # BEiT without one
            continue
        with torch.no_grad():
            bias = getattr(module, method)().detach().clone()
        module.register_buffer("folded_rel_pos_bias", bias, persistent=False)
        module.__class__ = _folded_class(type(module))
    return model


def _folded_class(cls: type) -> type:
    """``cls`` with FoldedRelativePositionBias mixed in (one class per original, reused)."""
    if cls not in _FOLDED:
        _FOLDED[cls] = type(f"Folded{cls.__name__}", (FoldedRelativePositionBias, cls), {})
    return _FOLDED[cls]


_FOLDED: dict[type, type] = {}


def prepare_for_xnnpack(model: torch.nn.Module, inplace: bool = False) -> torch.nn.Module:
    """The module-level rewrites, before torch.export. On a deep copy unless ``inplace`` (the caller's model
    stays the fp32 reference; a stage that loaded a model for this export alone can skip the copy)."""
    target = model if inplace else copy.deepcopy(model)
    target = linear_self_attention_means(fused_qkv_projections(unfused_attention(target)))
    target = folded_relative_position_biases(reparameterized_branches(target))
    return layer_norms_as_4d_means(target).eval()


# aten operator -> the position of its bias argument
BIAS_ARGUMENT = {torch.ops.aten.linear.default: 2, torch.ops.aten.conv1d.default: 2, torch.ops.aten.conv2d.default: 2,
                 torch.ops.aten.addmm.default: 0}


def fold_joined_biases(graph_module: torch.fx.GraphModule) -> bool:
    """A bias joined from parameters and buffers in forward (BEiT's and EVA's ``cat((q_bias, k_bias, v_bias))``)
    computed once into a buffer of ``graph_module`` (an exported program's ``.module()``); whether any was.
    XNNPACK takes a linear only with a constant bias: without this its float linear stays on portable kernels and
    its dynamically quantized one has no kernel at all. Before lowering: ExecuTorch decides which linears to keep
    whole before any edge pass runs."""
    graph, folded = graph_module.graph, False
    for node in list(graph.nodes):
        parts = node.args[0] if node.op == "call_function" and node.target == torch.ops.aten.cat.default else ()
        if not parts or not all(isinstance(p, torch.fx.Node) and p.op == "get_attr" for p in parts) \
                or not node.users or not all(_is_bias_of(node, user) for user in node.users):
            continue
        value = torch.cat([_attribute(graph_module, p.target) for p in parts], *node.args[1:]).detach().clone()
        name = f"_joined_bias_{sum(1 for n, _ in graph_module.named_buffers() if n.startswith('_joined_bias_'))}"
        graph_module.register_buffer(name, value)
        with graph.inserting_before(node):
            node.replace_all_uses_with(graph.get_attr(name))
        graph.erase_node(node)
        folded = True
    if folded:
        graph.eliminate_dead_code()
        graph_module.recompile()
    return folded


def _is_bias_of(node: torch.fx.Node, user: torch.fx.Node) -> bool:
    position = BIAS_ARGUMENT.get(user.target)
    return position is not None and len(user.args) > position and user.args[position] is node \
        and node not in user.args[:position] + user.args[position + 1:]


def _attribute(module: torch.nn.Module, dotted: str) -> torch.Tensor:
    for part in dotted.split("."):
        module = getattr(module, part)
    return module


class SqueezeAsView(ExportPass):
    """squeeze_copy (qkv.unbind(0) exports as slice + squeeze) and unsqueeze_copy (XNNPACK takes it on the last
    dim only; Swin's masks and biases add a leading one) as the view_copy of its known output shape, which XNNPACK
    takes as a reshape."""

    def call_operator(self, op, args, kwargs, meta):
        if op in SQUEEZES:
            return super().call_operator(EDGE.view_copy.default, (args[0], list(meta["val"].shape)), {}, meta)
        return super().call_operator(op, args, kwargs, meta)


class RemoveNoopExpand(ExportPass):
    """Drop expand_copy and repeat nodes whose output has the input's shape (matmul's broadcast, the class token's
    expand and XCiT's position encoding's repeat at batch 1): they copy, and XNNPACK has neither to take them."""

    def call_operator(self, op, args, kwargs, meta):
        if op in COPIES and args[0].to_tensor().shape == meta["val"].shape:
            return args[0]
        return super().call_operator(op, args, kwargs, meta)


class RemoveAliasCopy(ExportPass):
    """Drop alias_copy nodes (a slice over a whole dim, Swin's x[:, :H, :W] after a padding of 0, exports as one):
    they copy a tensor unchanged, and XNNPACK has no alias to take them."""

    def call_operator(self, op, args, kwargs, meta):
        if op == EDGE.alias_copy.default:
            return args[0]
        return super().call_operator(op, args, kwargs, meta)


class SelectAsSliceView(ExportPass):
    """select_copy (the class token, x[:, 0]) as slice_copy of length 1 then view_copy, both XNNPACK operators,
    so the head joins the rest of the graph in one delegate."""

    def call_operator(self, op, args, kwargs, meta):
        if op != EDGE.select_copy.int:
            return super().call_operator(op, args, kwargs, meta)
        source, dim, index = args
        size = source.to_tensor().shape[dim]
        start = index % size  # a negative index counts from the end
        sliced = super().call_operator(EDGE.slice_copy.Tensor, (source, dim, start, start + 1, 1), {}, meta)
        return super().call_operator(EDGE.view_copy.default, (sliced, list(meta["val"].shape)), {}, meta)


class SplitAsSlices(ExportPass):
    """split_with_sizes_copy / split_copy (torch.split, chunk: LeViT's and EfficientFormer's q/k/v, EfficientViT's
    and MobileViT v2's heads) as one slice_copy per part, which XNNPACK takes; it has no split. After Arm's
    ConvertSplitToSlicePass (executorch backends/arm/_passes/convert_split_to_slice.py), as an ExportPass: the
    split becomes a tuple of slices and each getitem picks its slice."""

    def call_operator(self, op, args, kwargs, meta):
        if op not in SPLITS:
            return super().call_operator(op, args, kwargs, meta)
        source, sizes = args[0], args[1]
        dim = (args[2] if len(args) > 2 else kwargs.get("dim", 0)) % source.to_tensor().dim()
        length = source.to_tensor().shape[dim]
        if isinstance(sizes, int):  # split_copy.Tensor: equal parts, the last one shorter
            sizes = [min(sizes, length - start) for start in range(0, length, sizes)]
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        return tuple(super(SplitAsSlices, self).call_operator(
            EDGE.slice_copy.Tensor, (source, dim, start, start + size, 1), {}, meta)
            for start, size in zip(starts, sizes, strict=True))

    def call_getitem(self, value, key, meta):
        if isinstance(value, tuple):  # a split made slices above
            return value[key]
        return super().call_getitem(value, key, meta)


class MeanAs4d(ExportPass):
    """mean.dim over any dims of any rank (EfficientFormer's and LeViT's token average x.mean(1) on [N, T, C],
    MobileViT v2's context, see LinearSelfAttentionMeans) as the one mean XNNPACK has: dims [2, 3] of a 4-D
    tensor, keepdim. The reduced dims are permuted last and the tensor viewed as [M, 1, R, 1] (one channel: its
    NHWC layout is the same memory, no transposes), then viewed to the mean's shape."""

    def call_operator(self, op, args, kwargs, meta):
        if op != EDGE.mean.dim or not self._rewritable(args, kwargs):
            return super().call_operator(op, args, kwargs, meta)
        source = args[0]
        shape = list(source.to_tensor().shape)
        rank = len(shape)
        dims = sorted({d % rank for d in args[1]})
        if rank == 4 and dims == [2, 3]:  # only keepdim missing: XNNPACK's mean on the NHWC tensor, then a view
            x = super().call_operator(EDGE.mean.dim, (source, [2, 3], True), {}, meta)
            return super().call_operator(EDGE.view_copy.default, (x, list(meta["val"].shape)), {}, meta)
        kept = [d for d in range(rank) if d not in dims]
        x = source
        if kept + dims != list(range(rank)):
            x = super().call_operator(EDGE.permute_copy.default, (x, kept + dims), {}, meta)
        x = super().call_operator(EDGE.view_copy.default, (x, [-1, 1, math.prod(shape[d] for d in dims), 1]), {},
                                  meta)
        x = super().call_operator(EDGE.mean.dim, (x, [2, 3], True), {}, meta)
        return super().call_operator(EDGE.view_copy.default, (x, list(meta["val"].shape)), {}, meta)

    @staticmethod
    def _rewritable(args, kwargs) -> bool:
        """A float mean over named dims that XNNPACK cannot take as it is (not dims [2, 3] of a 4-D keepdim)."""
        source = args[0].to_tensor()
        if len(args) < 2 or not args[1] or source.dtype != torch.float32 or kwargs.get("dtype") not in (None, torch.float32):
            return False
        keepdim = len(args) > 2 and bool(args[2])
        return not (source.dim() == 4 and sorted(d % 4 for d in args[1]) == [2, 3] and keepdim)


class StridedSliceAsView(ExportPass):
    """slice_copy with a step (LeViT's subsampling x[:, ::2, ::2]; XNNPACK slices only with step 1): slice the
    range with step 1, pad it with zeros to a multiple of the step, view the dim as [L / step, step] and keep
    index 0 of the second (the padding never lands there), then view to the output shape."""

    def call_operator(self, op, args, kwargs, meta):
        step = args[4] if len(args) > 4 else 1
        if op != EDGE.slice_copy.Tensor or step == 1:
            return super().call_operator(op, args, kwargs, meta)
        source, dim = args[0], args[1] % args[0].to_tensor().dim()
        shape = list(source.to_tensor().shape)
        start, end, _ = slice(args[2], args[3]).indices(shape[dim])
        x = source
        if (start, end) != (0, shape[dim]):
            x = super().call_operator(EDGE.slice_copy.Tensor, (x, dim, start, end, 1), {}, meta)
        length = end - start
        parts = -(-length // step)
        if parts * step != length:
            pad = [0, 0] * (len(shape) - 1 - dim) + [0, parts * step - length]
            x = super().call_operator(EDGE.constant_pad_nd.default, (x, pad, 0.0), {}, meta)
        grouped = shape[:dim] + [parts, step] + shape[dim + 1:]
        x = super().call_operator(EDGE.view_copy.default, (x, grouped), {}, meta)
        x = super().call_operator(EDGE.slice_copy.Tensor, (x, dim + 1, 0, 1, 1), {}, meta)
        return super().call_operator(EDGE.view_copy.default, (x, list(meta["val"].shape)), {}, meta)


class RollAsSlices(ExportPass):
    """index_select by an index computed from constants alone that rotates the dim (torch.roll, Swin's shifted
    windows, decomposes into arange, add, fmod and index_select; XNNPACK has none of them) as cat of the two
    slices it joins; the index arithmetic then has no users and goes. Any other index stays as it is."""

    def call_operator(self, op, args, kwargs, meta):
        if op != EDGE.index_select.default:
            return super().call_operator(op, args, kwargs, meta)
        source, dim, index = args
        dim = dim % source.to_tensor().dim()
        values = _constant_list(index.node)
        length = source.to_tensor().shape[dim]
        if values is None or len(values) != length or not all(isinstance(v, int) for v in values):
            return super().call_operator(op, args, kwargs, meta)
        shift = values[0] % length
        if values != [(i + shift) % length for i in range(length)]:
            return super().call_operator(op, args, kwargs, meta)
        if shift == 0:
            return source
        head = super().call_operator(EDGE.slice_copy.Tensor, (source, dim, shift, length, 1), {}, meta)
        tail = super().call_operator(EDGE.slice_copy.Tensor, (source, dim, 0, shift, 1), {}, meta)
        return super().call_operator(EDGE.cat.default, ([head, tail], dim), {}, meta)

    def call(self, graph_module):
        result = super().call(graph_module)
        result.graph_module.graph.eliminate_dead_code()  # the index arithmetic the slices replaced
        result.graph_module.recompile()
        return result


def _constant_list(node: torch.fx.Node) -> list | None:
    """The value of a node computed from constants alone as a (nested) list, or None (see _constant_value)."""
    from torch._subclasses.fake_tensor import unset_fake_temporarily

    with unset_fake_temporarily():  # real numbers, not the pass's fake tensors
        value = _constant_value(node)
        return value.tolist() if isinstance(value, torch.Tensor) else None


def _constant_value(node: torch.fx.Node, depth: int = 8) -> torch.Tensor | None:
    """The value of a node computed from constants alone, or None: literals, and the scalar tensors to_edge lifts
    from them (roll's shift), whose fake value keeps the real one as ``constant``; not parameters or inputs."""
    from torch._subclasses.fake_tensor import FakeTensor

    if node.op == "placeholder":  # an ExportPass retrace gives a lifted constant its real value
        value = node.meta.get("val")
        return getattr(value, "constant", None) if isinstance(value, FakeTensor) else value
    if node.op != "call_function" or depth == 0:
        return None
    inputs = {}
    for parent in node.all_input_nodes:
        if (inputs.setdefault(parent, _constant_value(parent, depth - 1))) is None:
            return None
    args, kwargs = torch.fx.node.map_arg((node.args, node.kwargs), inputs.__getitem__)
    try:
        return node.target(*args, **kwargs)
    except Exception:  # an operator that cannot run here (e.g. an out-of-tree one): not folded
        return None


class PowAsMul(ExportPass):
    """pow.Tensor_Scalar by the float 2.0 (F.normalize's and torch.norm's squares: XNNPACK's pow takes only the int
    2, "only support int powers, got 2.0") as x * x, and by 0.5 / -0.5 (the norm's root) as sqrt / rsqrt, which
    XNNPACK has. Other exponents stay as they are."""

    def call_operator(self, op, args, kwargs, meta):
        if op != EDGE.pow.Tensor_Scalar or not isinstance(args[1], float) or args[1] not in POWERS:
            return super().call_operator(op, args, kwargs, meta)
        if args[1] == 2.0:
            return super().call_operator(EDGE.mul.Tensor, (args[0], args[0]), {}, meta)
        return super().call_operator(POWERS[args[1]], (args[0],), {}, meta)


class LargerOperandFirst(ExportPass):
    """add and mul with the broadcast operand second: ``scale * x`` (HGNetV2's and CoaT's learnable scales) as
    ``x * scale``, the same numbers. ExecuTorch 1.3.1's channels-last pass follows a dynamically quantized conv's
    input up through each operator's first operand, and reaching a 1-D parameter that way it tries to make it
    channels-last and fails ("required rank 4 tensor to use channels_last format")."""

    def call_operator(self, op, args, kwargs, meta):
        if op in (EDGE.add.Tensor, EDGE.mul.Tensor) and kwargs.get("alpha", 1) == 1 and len(args) == 2 \
                and all(hasattr(a, "to_tensor") for a in args) \
                and args[0].to_tensor().numel() < args[1].to_tensor().numel():
            args = (args[1], args[0])
        return super().call_operator(op, args, kwargs, meta)


class UnpaddedAvgPool(ExportPass):
    """avg_pool2d with PyTorch's default count_include_pad=True, which XNNPACK refuses ("zero-padding in the
    averaging calculation is not supported"): without padding (DenseNet's transitions) there is nothing to count;
    with it (ResNeSt's downsampling) the zeros are padded first, by a constant pad XNNPACK has, and the pool counts
    them as it averages, the same numbers. Not with ceil_mode, whose last window may reach past the edge."""

    def call_operator(self, op, args, kwargs, meta):
        if op == EDGE.avg_pool2d.default and not (len(args) > 4 and args[4]) and (len(args) < 6 or args[5]) \
                and not kwargs:
            kernel = _pair(args[1])
            stride = _pair(args[2]) if len(args) > 2 and args[2] else kernel  # XNNPACK reads two of each
            padding = _pair(args[3]) if len(args) > 3 else [0, 0]
            source = args[0]
            if any(padding):
                pad = [padding[1], padding[1], padding[0], padding[0]]
                source = super().call_operator(EDGE.constant_pad_nd.default, (source, pad, 0.0), {}, meta)
            args = (source, kernel, stride, [0, 0], False, False, *args[6:])
        return super().call_operator(op, args, kwargs, meta)


class SoftmaxOnLastDim(ExportPass):
    """softmax over another dim than the last (CoaT's factorized attention, SKNet's and ResNeSt's split attention;
    XNNPACK: "dim must be the last dim") as the same softmax between two transposes, which XNNPACK takes as
    permutes."""

    def call_operator(self, op, args, kwargs, meta):
        if op != EDGE._softmax.default:
            return super().call_operator(op, args, kwargs, meta)
        rank = args[0].to_tensor().dim()
        dim = args[1] % rank
        if dim == rank - 1:
            return super().call_operator(op, args, kwargs, meta)
        order = list(range(rank))
        order[dim], order[-1] = order[-1], order[dim]
        moved = super().call_operator(EDGE.permute_copy.default, (args[0], order), {}, meta)
        soft = super().call_operator(op, (moved, rank - 1, *args[2:]), kwargs, meta)
        return super().call_operator(EDGE.permute_copy.default, (soft, order), {}, meta)


class NearestUpsampleAsBroadcast(ExportPass):
    """upsample_nearest2d by whole factors (HRNet's fuse layers; XNNPACK 1.3.1 has bilinear only) as each pixel
    broadcast over an [sh, sw] block: a view to [N, C, H, 1, W, 1], a multiply by ones of [sh, sw] and a view to
    [N, C, H*sh, W*sw]. The same numbers (x * 1.0); a factor that is not whole stays as it is."""

    def call_operator(self, op, args, kwargs, meta):
        if op != EDGE.upsample_nearest2d.vec:
            return super().call_operator(op, args, kwargs, meta)
        source, out = args[0].to_tensor(), meta["val"]
        n, c, h, w = source.shape
        if source.dtype != torch.float32 or out.shape[2] % h or out.shape[3] % w:
            return super().call_operator(op, args, kwargs, meta)
        sh, sw = out.shape[2] // h, out.shape[3] // w
        blocks = super().call_operator(EDGE.view_copy.default, (args[0], [n, c, h, 1, w, 1]), {}, meta)
        ones = _real_ones([1, 1, 1, sh, 1, sw])
        spread = super().call_operator(EDGE.mul.Tensor, (blocks, ones), {}, meta)
        return super().call_operator(EDGE.view_copy.default, (spread, [n, c, h * sh, w * sw]), {}, meta)


class CopyAsSource(ExportPass):
    """copy(dst, src) of the same shape and dtype is src: what an in-place assignment to the whole of a tensor
    (MViTv2's ``attn[:, :, sp_idx:, sp_idx:] = ...`` without a class token, sp_idx 0) leaves after
    functionalization; XNNPACK has no copy."""

    def call_operator(self, op, args, kwargs, meta):
        if op == EDGE.copy.default and hasattr(args[1], "to_tensor"):
            dst, src = args[0].to_tensor(), args[1].to_tensor()
            if dst.shape == src.shape and dst.dtype == src.dtype:
                return args[1]
        return super().call_operator(op, args, kwargs, meta)


class FinitePoolPadding(ExportPass):
    """A -inf constant pad read only by max pools (timm's "same"-padded MaxPool2dSame: ResNetV2 hybrids, EfficientNet
    TF ports) pads float32's lowest value instead: each window keeps a real pixel, so the maxima are the same, and
    ExecuTorch writes the pad's value into the JSON it hands flatc, which cannot parse -inf ("cannot parse value
    starting with: -": the whole .pte fails to serialize)."""

    def call(self, graph_module):
        for node in graph_module.graph.nodes:
            if node.target == EDGE.constant_pad_nd.default and len(node.args) > 2 and node.args[2] == -math.inf \
                    and node.users and all(user.target in MAX_POOLS for user in node.users):
                node.args = (*node.args[:2], torch.finfo(torch.float32).min)
        graph_module.recompile()
        return super().call(graph_module)


class AmaxAsMaximum(ExportPass):
    """amax over one short dim (Hiera's mask-unit pooling, ``view(...).amax(dim=3)`` over 4 values; XNNPACK has no
    reduction by max) as a chain of elementwise maximums of its slices, which XNNPACK takes: the same values."""

    def call_operator(self, op, args, kwargs, meta):
        if op != EDGE.amax.default or len(args) < 2 or len(args[1]) != 1:
            return super().call_operator(op, args, kwargs, meta)
        source = args[0].to_tensor()
        dim = args[1][0] % source.dim()
        if source.dtype != torch.float32 or not 1 < source.shape[dim] <= MAX_AMAX:
            return super().call_operator(op, args, kwargs, meta)
        parts = [super(AmaxAsMaximum, self).call_operator(EDGE.slice_copy.Tensor, (args[0], dim, i, i + 1, 1), {},
                                                          meta) for i in range(source.shape[dim])]
        out = functools.reduce(lambda a, b: super(AmaxAsMaximum, self).call_operator(EDGE.maximum.default, (a, b), {},
                                                                                      meta), parts)
        if len(args) > 2 and args[2]:
            return out
        return super().call_operator(EDGE.view_copy.default, (out, list(meta["val"].shape)), {}, meta)


def _pair(value) -> list[int]:
    """A pooling size as its two values (torch accepts one for both)."""
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    return values * 2 if len(values) == 1 else values


class SingleTensorCat(ExportPass):
    """cat of one tensor (DenseNet's first layer of each block joins its inputs, a list of one) is that tensor:
    XNNPACK's cat takes 2 to 5."""

    def call_operator(self, op, args, kwargs, meta):
        if op == EDGE.cat.default and len(args[0]) == 1:
            return args[0][0]
        return super().call_operator(op, args, kwargs, meta)


class SumAsMean(ExportPass):
    """sum.dim_IntList over named dims of a float tensor (the norms' sums of squares; XNNPACK has no sum) as the
    mean over the same dims times their number: MeanAs4d, after this pass, makes the mean XNNPACK's 4-D one."""

    def call_operator(self, op, args, kwargs, meta):
        if op != EDGE.sum.dim_IntList or len(args) < 2 or not args[1] or kwargs.get("dtype") is not None:
            return super().call_operator(op, args, kwargs, meta)
        source = args[0].to_tensor()
        if source.dtype != torch.float32:
            return super().call_operator(op, args, kwargs, meta)
        keepdim = len(args) > 2 and bool(args[2])
        count = math.prod(source.shape[d] for d in {d % source.dim() for d in args[1]})
        mean = super().call_operator(EDGE.mean.dim, (args[0], list(args[1]), keepdim), {}, meta)
        return super().call_operator(EDGE.mul.Tensor, (mean, _real_scalar(count)), {}, meta)


class VarAsMeans(ExportPass):
    """var.correction over named dims of a float tensor (timm's SimpleNorm / RMS-style norms of ConvNeXt's *_rms
    models; XNNPACK has no var) as the mean of the squared deviation from the mean, times N / (N - correction):
    MeanAs4d, after this pass, makes both means XNNPACK's 4-D one."""

    def call_operator(self, op, args, kwargs, meta):
        if op != EDGE.var.correction or len(args) < 2 or not args[1]:
            return super().call_operator(op, args, kwargs, meta)
        source = args[0].to_tensor()
        if source.dtype != torch.float32:
            return super().call_operator(op, args, kwargs, meta)
        dims = list(args[1])
        count = math.prod(source.shape[d] for d in {d % source.dim() for d in dims})
        correction = kwargs.get("correction", 1)
        correction = 1 if correction is None else correction
        mean = super().call_operator(EDGE.mean.dim, (args[0], dims, True), {}, meta)
        centered = super().call_operator(EDGE.sub.Tensor, (args[0], mean), {}, meta)
        squared = super().call_operator(EDGE.mul.Tensor, (centered, centered), {}, meta)
        out = super().call_operator(EDGE.mean.dim, (squared, dims, bool(kwargs.get("keepdim", False))), {}, meta)
        if correction == 0:
            return out
        return super().call_operator(EDGE.mul.Tensor, (out, _real_scalar(count / (count - correction))), {}, meta)


def _real_scalar(value: float) -> torch.Tensor:
    """A 0-d float32 tensor holding ``value``, real even inside a pass's fake mode: the edge dialect wants tensor
    operands, and the retrace stores a real one as a constant."""
    from torch._subclasses.fake_tensor import unset_fake_temporarily

    with unset_fake_temporarily():
        return torch.tensor(float(value))


def _real_ones(shape: list[int]) -> torch.Tensor:
    """A float32 tensor of ones, real even inside a pass's fake mode (stored as a constant, like _real_scalar)."""
    from torch._subclasses.fake_tensor import unset_fake_temporarily

    with unset_fake_temporarily():
        return torch.ones(shape)


class ExpandAsBroadcast(ExportPass):
    """Drop an expand_copy that changes the shape (or a repeat of dims of size 1, the same copy) when every user
    is an elementwise binary operator that broadcasts it to the same shape anyway (F.normalize's
    ``x / norm.expand_as(x)``): XNNPACK has no expand or repeat, and its binary operators broadcast. A source of
    lower rank is viewed with leading ones first."""

    def call(self, graph_module):
        # the nodes to drop, known by their output's fake tensor (call_operator sees a copy of the node's meta)
        self._dropped = {id(node.meta["val"]): node.meta["val"] for node in graph_module.graph.nodes
                         if node.op == "call_function" and _is_broadcast(node) and _broadcast_users(node)}
        return super().call(graph_module)

    def call_operator(self, op, args, kwargs, meta):
        if op not in COPIES or id(meta["val"]) not in self._dropped:
            return super().call_operator(op, args, kwargs, meta)
        source, rank = args[0], meta["val"].dim()
        shape = list(source.to_tensor().shape)
        if len(shape) == rank:
            return source
        return super().call_operator(EDGE.view_copy.default, (source, [1] * (rank - len(shape)) + shape), {}, meta)


def _is_broadcast(node: torch.fx.Node) -> bool:
    """An expand_copy, or a repeat that only repeats dims of size 1 (the source's, aligned right)."""
    if node.target == EDGE.expand_copy.default:
        return True
    if node.target != EDGE.repeat.default:
        return False
    shape = [1] * (len(node.args[1]) - node.args[0].meta["val"].dim()) + list(node.args[0].meta["val"].shape)
    return all(times == 1 or size == 1 for times, size in zip(node.args[1], shape, strict=True))


def _broadcast_users(node: torch.fx.Node) -> bool:
    """Every user of ``node`` is a binary elementwise operator whose output keeps its shape with ``node``'s source
    in its place: the other operand broadcasts the source to it."""
    source = node.args[0].meta["val"].shape
    for user in node.users:
        if user.target not in BROADCASTING:
            return False
        others = [arg.meta["val"].shape if isinstance(arg, torch.fx.Node) else () for arg in user.args[:2]
                  if arg is not node]
        if torch.broadcast_shapes(source, *others) != user.meta["val"].shape:
            return False
    return bool(node.users)


GATHERS = (EDGE.index.Tensor,)  # read parameters alone and are still folded (FoldShapeConstants)


class FoldShapeConstants(ExportPass):
    """Compute once, at export, what depends on no input: operators whose arguments are literals, constants
    torch.export lifted from literals, or tensors folded before (XCiT's and EdgeNeXt's Fourier position encodings:
    arange, cumsum, div, pow, full, repeat over the input's fixed shape, and the conv that projects them, with its
    quantization); each becomes a constant, which XNNPACK takes as a weight. Parameters join a fold but never start
    one: what reads parameters alone (a weight's quantization, its transpose) stays as it is, except a gather
    (index.Tensor: LeViT's, TinyViT's, GC ViT's attention biases, a table of parameters read at the indices of a
    buffer), which XNNPACK has no rule for and whose result is a bias like any other. After ExecuTorch's
    ConstPropPass (exir/passes/const_prop_pass.py), which stops at lifted constants."""

    def __init__(self, values: dict[str, torch.Tensor] | None = None):
        super().__init__()
        self.values = values or {}  # placeholder name -> real value (program_values): the retrace's are fake

    def call(self, graph_module):
        # id(proxy) -> (proxy, value): the proxy kept, so its id stays unique
        self._literal: dict[int, tuple] = {}  # lifted literals: their value
        self._known: dict[int, tuple] = {}  # parameters and what they alone give: a function computing it
        result = super().call(graph_module)
        result.graph_module.graph.eliminate_dead_code()  # what only a fold read (the folded conv's weights)
        result.graph_module.recompile()
        return result

    def placeholder(self, name, arg, meta):
        value = super().placeholder(name, arg, meta)
        real = arg if _is_real(arg) else self.values.get(name)
        if real is not None:
            table = self._literal if name.startswith(LIFTED_CONSTANTS) else self._known
            table[id(value)] = (value, real if table is self._literal else lambda: real)
        return value

    def call_operator(self, op, args, kwargs, meta):
        found = {"literal": False, "known": False, "unknown": False}
        real = torch.utils._pytree.tree_map(lambda v: self._resolve(v, found), (args, kwargs))
        if found["unknown"] or not _foldable(real):
            return super().call_operator(op, args, kwargs, meta)
        if found["known"] and not found["literal"] and op not in GATHERS:  # parameters alone: kept, its value known
            result = super().call_operator(op, args, kwargs, meta)
            self._known[id(result)] = (result, functools.cache(lambda: _run(op, *_computed(real))))
            return result
        return torch.utils._pytree.tree_map(_static, _run(op, *_computed(real)))

    def call_getitem(self, value, key, meta):
        if isinstance(value, (tuple, list)):  # an operator with several outputs, folded above
            return value[key]
        return super().call_getitem(value, key, meta)

    def _resolve(self, value, found: dict[str, bool]):
        """A literal's or folded tensor's value, a parameter's function, or the proxy itself (noted in found)."""
        from executorch.exir.pass_base import ProxyValue

        for kind, table in (("literal", self._literal), ("known", self._known)):
            proxy, real = table.get(id(value), (None, None))
            if proxy is value:
                found[kind] = True
                return real if kind == "literal" else _Known(real)
        if isinstance(value, ProxyValue):
            found["unknown"] = True
        elif _is_real(value):
            found["literal"] = True  # folded before
        return value


class _Known:
    """A parameter-derived value, computed when a fold reads it."""

    def __init__(self, compute):
        self.compute = compute


def _computed(real):
    return torch.utils._pytree.tree_map(lambda v: v.compute() if isinstance(v, _Known) else v, real)


def _static(value):
    """A folded tensor as a Parameter that needs no grad: ExportPass's retrace gives a plain tensor constant symbolic
    sizes (only a Parameter gets static ones), and one symbolic conv weight (the ResNetV2 hybrids' standardized
    weights) makes every shape after it symbolic, which the partitioner refuses ("Expecting non-zero, int values")."""
    if not _is_real(value):
        return value
    from torch._subclasses.fake_tensor import unset_fake_temporarily

    with unset_fake_temporarily():
        return torch.nn.Parameter(value, requires_grad=False)


def _run(op, args, kwargs):
    """``op`` on real tensors, outside the pass's fake mode; no autograd (parameters require grad)."""
    from torch._subclasses.fake_tensor import unset_fake_temporarily

    with unset_fake_temporarily(), torch.no_grad():
        return op(*args, **kwargs)


def program_values(program: torch.export.ExportedProgram | None) -> dict[str, torch.Tensor]:
    """The values of ``program``'s parameters, buffers and constants by placeholder name (pt2e's quantized program
    keeps its literals as buffers, which an ExportPass retrace sees as fake tensors)."""
    if program is None:
        return {}
    values = {**program.state_dict, **program.constants}
    return {spec.arg.name: values[spec.target] for spec in program.graph_signature.input_specs
            if spec.target in values}


def _quantization(op) -> bool:
    """A quantize, dequantize or choose-qparams operator: kept, XNNPACK recognizes a quantized operator by them
    (as ExecuTorch's ConstPropPass leaves them)."""
    return getattr(op, "namespace", None) in QUANTIZATION_NAMESPACES or "qparams" in getattr(op, "__name__", "")


def _is_real(value) -> bool:
    from torch._subclasses.fake_tensor import FakeTensor

    return isinstance(value, torch.Tensor) and not isinstance(value, FakeTensor)


def _foldable(value) -> bool:
    """True for literals and real tensors, alone or nested in lists, tuples and dicts (not fake tensors)."""
    from torch._subclasses.fake_tensor import FakeTensor

    if isinstance(value, FakeTensor):
        return False
    if isinstance(value, (tuple, list)):
        return all(map(_foldable, value))
    if isinstance(value, dict):
        return all(map(_foldable, value.values()))
    return isinstance(value, (bool, int, float, str, torch.Tensor, torch.device, torch.dtype, torch.layout,
                              torch.memory_format, type(None), _Known))

SPLITS = (EDGE.split_with_sizes_copy.default, EDGE.split_copy.Tensor)
COPIES = (EDGE.expand_copy.default, EDGE.repeat.default)
# torch.export's names for a tensor made in forward from literals: lifted by export, and as pt2e's quantized
# program keeps them (get_attr _tensor_constant_N, lifted as buffer b__tensor_constant_N when exported again)
QUANTIZATION_NAMESPACES = ("quantized_decomposed", "torchao", "quant")
LIFTED_CONSTANTS = ("_lifted_tensor_constant", "b__tensor_constant_")
POWERS = {2.0: EDGE.mul.Tensor, 0.5: EDGE.sqrt.default, -0.5: EDGE.rsqrt.default}
BROADCASTING = (EDGE.add.Tensor, EDGE.sub.Tensor, EDGE.mul.Tensor, EDGE.div.Tensor, EDGE.maximum.default,
                EDGE.minimum.default)


def edge_passes(program: torch.export.ExportedProgram | None = None) -> list[ExportPass]:
    """The edge-graph passes for ``to_edge_transform_and_lower(program, transform_passes=edge_passes(program))``
    (``program``: where FoldShapeConstants finds the values of constants a quantized program keeps as buffers)."""
    return [SqueezeAsView(), RemoveNoopExpand(), ExpandAsBroadcast(), SelectAsSliceView(), SplitAsSlices(),
            PowAsMul(), SumAsMean(), VarAsMeans(), MeanAs4d(), StridedSliceAsView(), RollAsSlices(),
            FoldShapeConstants(program_values(program)), LargerOperandFirst(), UnpaddedAvgPool(),
            SingleTensorCat(), SoftmaxOnLastDim(), NearestUpsampleAsBroadcast(), CopyAsSource(), FinitePoolPadding(),
            AmaxAsMaximum(), RemoveAliasCopy()]
