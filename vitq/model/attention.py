"""timm and transformers attention as plain matmuls (q @ k.T, softmax, @ v) instead of fused
scaled_dot_product_attention: XNNPACK cannot take what the fused form exports as (xnnpack_rewrites), and the ONNX
exporter fails on some fused forms (5-D SDPA, the fused output viewed with a dynamic batch: stages.onnx_fp32).
Imports neither ExecuTorch nor vitq."""

from __future__ import annotations

import torch

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
