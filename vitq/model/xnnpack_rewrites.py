"""Rewrites that let ExecuTorch 1.3.1's XNNPACK delegate take a whole ViT, where a third of DeiT-Tiny's graph
stayed on portable kernels (668/1010 nodes delegated, in 62 islands).

XNNPACK there has no LayerNorm, squeeze, expand, select, where or any, and its mean only averages a 4-D tensor
over dims [2, 3] with keepdim. So before torch.export the model computes the same thing with operators it has:
plain attention instead of scaled_dot_product_attention (whose export brings _safe_softmax's eq/any/where), no
all-zero attention mask (transformers), one q/k/v linear (transformers; three that share a dynamically quantized
input cut the delegate), LayerNorm as 4-D means. On the edge graph, before partitioning, the shape-only leftovers
become views (squeeze, the class token's select) or disappear (expands that change nothing).

Use: ``prepare_for_xnnpack(model)`` before torch.export, ``transform_passes=edge_passes()`` in
``to_edge_transform_and_lower``. Nothing here imports vitq."""

from __future__ import annotations

import copy

import torch
from executorch.exir.dialects._ops import ops as exir_ops
from executorch.exir.pass_base import ExportPass

EDGE = exir_ops.edge.aten
SQUEEZES = (EDGE.squeeze_copy.default, EDGE.squeeze_copy.dim, EDGE.squeeze_copy.dims)
UNMASKED_EAGER = "unmasked_eager"  # the attention name registered with transformers (see unfused_attention)


def unfused_attention(model: torch.nn.Module) -> torch.nn.Module:
    """timm and transformers attention as q @ k.T, softmax, @ v: the fused form exports as _safe_softmax, whose
    eq/any/logical_not/full_like/where XNNPACK cannot take. In place; returns the model."""
    for module in model.modules():
        if isinstance(getattr(module, "fused_attn", None), bool):  # timm Attention (read on every forward)
            module.fused_attn = False
        config = getattr(module, "config", None)
        if hasattr(module, "set_attn_implementation") and config._attn_implementation != UNMASKED_EAGER:
            _register_unmasked_eager()
            module.set_attn_implementation(UNMASKED_EAGER)  # transformers PreTrainedModel: also its sub-models
    return model


def _register_unmasked_eager() -> None:
    """transformers' own "eager" would also build the all-zero attention mask (arange, ge, expand, where: portable
    kernels); for an attention name with no mask function registered, transformers builds none."""
    from transformers import AttentionInterface

    AttentionInterface.register(UNMASKED_EAGER, unmasked_eager_attention)


def unmasked_eager_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers' eager_attention_forward (ViT): softmax(q @ k.T * scaling) @ v, no mask built for it (ViT
    attends to every patch; a mask still given is added)."""
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = torch.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = torch.nn.functional.dropout(weights, p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


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
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child).__name__ == "ViTAttention" and hasattr(child, "q_proj"):
                setattr(parent, name, FusedQkvAttention(child))
    return model


class LayerNorm4d(torch.nn.Module):
    """LayerNorm over the last dim as means of a [N, 1, C, 1] view: the only mean XNNPACK lowers (global average
    pooling) reduces dims [2, 3] of a 4-D tensor, and with one channel its NHWC layout is the same memory."""

    def __init__(self, norm: torch.nn.LayerNorm):
        super().__init__()
        self.eps = norm.eps
        self.weight = norm.weight  # shared, not copied: the rewrite replaces the module in place
        self.bias = norm.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, 1, x.shape[-1], 1)
        centered = flat - flat.mean(dim=(2, 3), keepdim=True)
        variance = (centered * centered).mean(dim=(2, 3), keepdim=True)
        out = (centered * torch.rsqrt(variance + self.eps)).reshape(x.shape)
        if self.weight is not None:
            out = out * self.weight
        if self.bias is not None:
            out = out + self.bias
        return out


def layer_norms_as_4d_means(model: torch.nn.Module) -> torch.nn.Module:
    """Every nn.LayerNorm over the last dim becomes a LayerNorm4d with the same weight, bias and eps (XNNPACK has
    no LayerNorm). In place; returns the model (or its replacement, when the model itself is a LayerNorm)."""
    if _last_dim_norm(model):
        return LayerNorm4d(model)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if _last_dim_norm(child):
                setattr(parent, name, LayerNorm4d(child))
    return model


def _last_dim_norm(module: torch.nn.Module) -> bool:
    """A LayerNorm LayerNorm4d can stand for: one normalized dim, the last."""
    return isinstance(module, torch.nn.LayerNorm) and len(module.normalized_shape) == 1


def prepare_for_xnnpack(model: torch.nn.Module, inplace: bool = False) -> torch.nn.Module:
    """The module-level rewrites, before torch.export. On a deep copy unless ``inplace`` (the caller's model
    stays the fp32 reference; a stage that loaded a model for this export alone can skip the copy)."""
    target = model if inplace else copy.deepcopy(model)
    return layer_norms_as_4d_means(fused_qkv_projections(unfused_attention(target))).eval()


class SqueezeAsView(ExportPass):
    """squeeze_copy (qkv.unbind(0) exports as slice + squeeze) as the view_copy of its known output shape, which
    XNNPACK takes as a reshape."""

    def call_operator(self, op, args, kwargs, meta):
        if op in SQUEEZES:
            return super().call_operator(EDGE.view_copy.default, (args[0], list(meta["val"].shape)), {}, meta)
        return super().call_operator(op, args, kwargs, meta)


class RemoveNoopExpand(ExportPass):
    """Drop expand_copy nodes whose output has the input's shape (matmul's broadcast and the class token's
    expand at batch 1): they copy, and XNNPACK has no expand to take them."""

    def call_operator(self, op, args, kwargs, meta):
        if op == EDGE.expand_copy.default and args[0].to_tensor().shape == meta["val"].shape:
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


def edge_passes() -> list[ExportPass]:
    """The edge-graph passes for ``to_edge_transform_and_lower(..., transform_passes=edge_passes())``."""
    return [SqueezeAsView(), RemoveNoopExpand(), SelectAsSliceView()]
