"""Label maps as concat conditioning for semantic synthesis (Sec. 4.3.2): one-hot, then a spatial rescaler.

The released semantic model one-hots the 182 COCO-Stuff classes, halves the map
twice bilinearly to the latent size (f = 4) and maps the classes to 3 channels
with a bias-free 1x1 conv (182 * 3 = 546 parameters); the result is
concatenated to the latent, so the UNet takes 3 + 3 channels.
"""

from __future__ import annotations

from typing import get_args

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ldm.conditioning.config import RescaleMethod
from ldm.data.label_maps import IGNORE_INDEX


def one_hot(label_map: Tensor, n_classes: int, ignore_index: int = IGNORE_INDEX, dtype: torch.dtype = torch.float32) -> Tensor:
    """label_map [N x H x W] long ids in 0..n_classes-1 or ignore_index -> [N x C x H x W]; ignored pixels all zero."""
    if label_map.dim() != 3:
        raise ValueError(f"one_hot expects a label map [N x H x W], got shape {tuple(label_map.shape)}")
    labelled = label_map != ignore_index
    ids = label_map[labelled]
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= n_classes):
        raise ValueError(f"label ids must lie in 0..{n_classes - 1} or be {ignore_index} (ignored), "
                         f"got {int(ids.min())}..{int(ids.max())}")
    vectors = F.one_hot(torch.where(labelled, label_map, 0), n_classes).to(dtype)  # (N, H, W, C)
    vectors = vectors * rearrange(labelled, "n h w -> n h w 1").to(dtype)
    return rearrange(vectors, "n h w c -> n c h w")


class SpatialRescaler(nn.Module):
    """n_stages resizes by `multiplier` with `method`, then a 1x1 conv in_channels -> out_channels if out_channels is set."""

    def __init__(self, n_stages: int = 1, method: RescaleMethod = "bilinear", multiplier: float = 0.5,
                 in_channels: int = 3, out_channels: int | None = None, bias: bool = False):
        super().__init__()
        if n_stages < 0:
            raise ValueError(f"n_stages must be >= 0, got {n_stages}")
        if method not in get_args(RescaleMethod):
            raise ValueError(f"method must be one of {get_args(RescaleMethod)}, got {method!r}")
        if multiplier <= 0:
            raise ValueError(f"multiplier must be > 0, got {multiplier}")
        self.n_stages, self.method, self.multiplier = n_stages, method, multiplier
        self.in_channels = in_channels
        # The reference's name, so its checkpoints' `channel_mapper.weight` load as they are.
        self.channel_mapper = nn.Conv2d(in_channels, out_channels, 1, bias=bias) if out_channels is not None else None

    @property
    def out_channels(self) -> int:
        """Channels of the output: out_channels if remapped, else in_channels."""
        return self.channel_mapper.out_channels if self.channel_mapper is not None else self.in_channels

    def forward(self, x: Tensor) -> Tensor:
        """x [N x in_channels x H x W] -> [N x out_channels x H * m^n x W * m^n] (floored at each stage)."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"SpatialRescaler expects [N x {self.in_channels} x H x W], got {tuple(x.shape)}")
        for _ in range(self.n_stages):
            x = F.interpolate(x, scale_factor=self.multiplier, mode=self.method)  # (N, C, H * m, W * m)
        if self.channel_mapper is not None:
            x = self.channel_mapper(x)  # (N, out_channels, h, w)
        return x
