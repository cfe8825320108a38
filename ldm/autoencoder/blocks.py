"""Building blocks of the encoder and decoder: res blocks, attention, resampling."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    """GroupNorm with the reference's eps (1e-6)."""
    return nn.GroupNorm(num_groups=groups, num_channels=channels, eps=1e-6, affine=True)


class ResBlock(nn.Module):
    """Pre-activation residual block: (GroupNorm, SiLU, conv3x3) x 2, 1x1 skip if widths differ."""

    def __init__(self, in_ch: int, out_ch: int, *, groups: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = group_norm(in_ch, groups)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm2 = group_norm(out_ch, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N x C_in x H x W] -> [N x C_out x H x W]."""
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention over all H*W positions, residual."""

    def __init__(self, channels: int, *, groups: int) -> None:
        super().__init__()
        self.norm = group_norm(channels, groups)
        # Separate 1x1 q/k/v convs keep the reference's parameter layout.
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N x C x H x W] -> [N x C x H x W]."""
        height = x.shape[2]
        h = self.norm(x)
        q, k, v = (rearrange(proj(h), "n c h w -> n 1 (h w) c") for proj in (self.q, self.k, self.v))
        h = F.scaled_dot_product_attention(q, k, v)  # (N, 1, H*W, C), scale 1/sqrt(C)
        h = rearrange(h, "n 1 (h w) c -> n c h w", h=height)  # (N, C, H, W)
        return x + self.proj_out(h)


class Downsample(nn.Module):
    """Strided 3x3 conv halving H and W."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N x C x H x W] -> [N x C x H/2 x W/2]."""
        # Pad right and bottom only, as the reference does, so even sizes halve exactly.
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest-neighbour x2 followed by a 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N x C x H x W] -> [N x C x 2H x 2W]."""
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
