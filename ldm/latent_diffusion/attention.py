"""Attention layers of the UNet: the ablated UNet's self-attention and the SpatialTransformer (Tab. 16).

All attention goes through torch.nn.functional.scaled_dot_product_attention,
which picks a fused kernel where one exists.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint


def zero_module(module: nn.Module) -> nn.Module:
    """Zero a module's parameters: residual branches start as the identity."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def multihead_attention(q: Tensor, k: Tensor, v: Tensor, heads: int) -> Tensor:
    """softmax(q k^T / sqrt(d)) v per head: q [N x Lq x H*d], k, v [N x Lk x H*d] -> [N x Lq x H*d]."""
    q, k, v = (rearrange(a, "n l (h d) -> n h l d", h=heads) for a in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v)  # (N, H, Lq, d)
    return rearrange(out, "n h l d -> n l (h d)")


# ---------------------------------------------------------------------------
# Ablated-UNet self-attention (Dhariwal & Nichol)
# ---------------------------------------------------------------------------

class AttentionBlock(nn.Module):
    """Spatial self-attention with a zero-initialised output projection and a residual."""

    def __init__(self, channels: int, heads: int, norm_groups: int = 32, use_checkpoint: bool = False):
        super().__init__()
        self.heads = heads
        self.use_checkpoint = use_checkpoint
        self.norm = nn.GroupNorm(norm_groups, channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj_out = zero_module(nn.Linear(channels, channels))

    def forward(self, x: Tensor) -> Tensor:
        """x [N x C x H x W] -> [N x C x H x W]."""
        if self.use_checkpoint and torch.is_grad_enabled():
            return checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)

    def _forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        tokens = rearrange(self.norm(x), "n c h w -> n (h w) c")
        q, k, v = self.qkv(tokens).chunk(3, dim=-1)  # 3 x (N, HW, C)
        out = self.proj_out(multihead_attention(q, k, v, self.heads))  # (N, HW, C)
        return x + rearrange(out, "n (h w) c -> n c h w", h=h, w=w)


# ---------------------------------------------------------------------------
# SpatialTransformer: self-attention, cross-attention, GEGLU feed-forward (Tab. 16)
# ---------------------------------------------------------------------------

class CrossAttention(nn.Module):
    """Multi-head attention of queries [N x L x D] over a context [N x M x D_ctx] (itself if None)."""

    def __init__(self, query_dim: int, context_dim: int, heads: int, dim_head: int, dropout: float = 0.0):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, query_dim), nn.Dropout(dropout))

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """x [N x L x D], context [N x M x D_ctx] or None (self-attention) -> [N x L x D]."""
        context = x if context is None else context
        out = multihead_attention(self.to_q(x), self.to_k(context), self.to_v(context), self.heads)
        return self.to_out(out)


class GEGLUFeedForward(nn.Module):
    """Position-wise MLP with a GELU-gated linear unit, hidden width mult x dim (Shazeer 2020)."""

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0):
        super().__init__()
        self.proj_in = nn.Linear(dim, 2 * mult * dim)
        self.drop = nn.Dropout(dropout)
        self.proj_out = nn.Linear(mult * dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        """x [N x L x D] -> [N x L x D]."""
        value, gate = self.proj_in(x).chunk(2, dim=-1)  # 2 x (N, L, mult*D)
        return self.proj_out(self.drop(value * F.gelu(gate)))


class TransformerBlock(nn.Module):
    """Pre-norm block: self-attention, cross-attention to the context, GEGLU MLP; each residual."""

    def __init__(self, dim: int, heads: int, dim_head: int, context_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = CrossAttention(dim, dim, heads, dim_head, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = CrossAttention(dim, context_dim, heads, dim_head, dropout)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = GEGLUFeedForward(dim, dropout=dropout)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        """x [N x L x D], context [N x M x D_ctx] -> [N x L x D]."""
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), context)
        return x + self.ff(self.norm3(x))


class SpatialTransformer(nn.Module):
    """Tab. 16: GroupNorm, 1x1 conv in, depth x TransformerBlock, zero-initialised 1x1 conv out, residual."""

    def __init__(self, channels: int, heads: int, dim_head: int, depth: int, context_dim: int,
                 dropout: float = 0.0, norm_groups: int = 32, use_checkpoint: bool = False):
        super().__init__()
        inner = heads * dim_head
        self.use_checkpoint = use_checkpoint
        self.norm = nn.GroupNorm(norm_groups, channels, eps=1e-6)
        self.proj_in = nn.Conv2d(channels, inner, kernel_size=1)
        self.blocks = nn.ModuleList(
            TransformerBlock(inner, heads, dim_head, context_dim, dropout) for _ in range(depth)
        )
        self.proj_out = zero_module(nn.Conv2d(inner, channels, kernel_size=1))

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        """x [N x C x H x W], context [N x M x D_ctx] -> [N x C x H x W]."""
        if context is None:
            raise ValueError("SpatialTransformer needs a context [N x M x D_ctx]; got None")
        if self.use_checkpoint and torch.is_grad_enabled():
            return checkpoint(self._forward, x, context, use_reentrant=False)
        return self._forward(x, context)

    def _forward(self, x: Tensor, context: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        tokens = rearrange(self.proj_in(self.norm(x)), "n c h w -> n (h w) c")  # (N, HW, inner)
        for block in self.blocks:
            tokens = block(tokens, context)
        out = rearrange(tokens, "n (h w) c -> n c h w", h=h, w=w)  # (N, inner, H, W)
        return x + self.proj_out(out)
