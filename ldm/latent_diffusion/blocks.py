"""Convolutional building blocks of the ablated UNet: timestep embedding, res blocks, resamplers."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ldm.latent_diffusion.attention import SpatialTransformer, zero_module


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of integer timesteps (Vaswani et al.): t [N] -> [N x dim], float32."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]  # (N, dim/2)
    emb = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)  # (N, 2*(dim/2))
    return F.pad(emb, (0, dim % 2))  # (N, dim)


class Downsample(nn.Module):
    """Halve H and W: strided 3x3 conv, or 2x2 average pooling."""

    def __init__(self, channels: int, use_conv: bool):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1) if use_conv else nn.AvgPool2d(2)

    def forward(self, x: Tensor) -> Tensor:
        """x [N x C x H x W] -> [N x C x H/2 x W/2]."""
        return self.op(x)


class Upsample(nn.Module):
    """Double H and W: nearest neighbour, then an optional 3x3 conv."""

    def __init__(self, channels: int, use_conv: bool):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1) if use_conv else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """x [N x C x H x W] -> [N x C x 2H x 2W]."""
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class ResBlock(nn.Module):
    """Residual block conditioned on the timestep embedding, optionally resampling (BigGAN style)."""

    def __init__(self, channels: int, emb_channels: int, out_channels: int, *, dropout: float = 0.0,
                 use_scale_shift_norm: bool = False, up: bool = False, down: bool = False,
                 norm_groups: int = 32, use_checkpoint: bool = False):
        super().__init__()
        self.use_scale_shift_norm = use_scale_shift_norm
        self.use_checkpoint = use_checkpoint
        self.in_norm = nn.GroupNorm(norm_groups, channels)
        self.in_conv = nn.Conv2d(channels, out_channels, 3, padding=1)
        if up:
            self.resample: nn.Module = Upsample(channels, use_conv=False)
        elif down:
            self.resample = Downsample(channels, use_conv=False)
        else:
            self.resample = nn.Identity()
        self.resamples = up or down
        self.emb_proj = nn.Linear(emb_channels, 2 * out_channels if use_scale_shift_norm else out_channels)
        self.out_norm = nn.GroupNorm(norm_groups, out_channels)
        self.dropout = nn.Dropout(dropout)
        self.out_conv = zero_module(nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip = nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        """x [N x C x H x W], emb [N x E] -> [N x C_out x H' x W'] (H' = H, 2H or H/2)."""
        if self.use_checkpoint and torch.is_grad_enabled():
            return checkpoint(self._forward, x, emb, use_reentrant=False)
        return self._forward(x, emb)

    def _forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = F.silu(self.in_norm(x))
        if self.resamples:  # resample before the conv, and the skip path alike
            h, x = self.resample(h), self.resample(x)
        h = self.in_conv(h)  # (N, C_out, H', W')
        e = rearrange(self.emb_proj(F.silu(emb)), "n c -> n c 1 1").to(h.dtype)
        if self.use_scale_shift_norm:
            scale, shift = e.chunk(2, dim=1)
            h = F.silu(self.out_norm(h) * (1 + scale) + shift)
        else:
            h = F.silu(self.out_norm(h + e))
        h = self.out_conv(self.dropout(h))
        return self.skip(x) + h


class EmbedSequential(nn.Sequential):
    """A sequence of blocks; each gets what it needs: res blocks the embedding, transformers the context."""

    def forward(self, x: Tensor, emb: Tensor, context: Tensor | None = None) -> Tensor:  # type: ignore[override]
        """x [N x C x H x W], emb [N x E], context [N x M x D] or None -> [N x C' x H' x W']."""
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, context)
            else:  # AttentionBlock, Downsample, Upsample, the input conv
                x = layer(x)
        return x
