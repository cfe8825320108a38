"""The mask at the latent's resolution: what the inpainting model's concat condition holds beside the masked image.

The reference resizes the mask with `interpolate(mask, size=latent)`, torch's default
nearest mode: latent pixel (i, j) takes the image pixel (floor(i H / h), floor(j W / w)),
so the result stays in {0, 1}.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange


def latent_mask(mask: torch.Tensor | np.ndarray, size: tuple[int, int]) -> torch.Tensor | np.ndarray:
    """Mask [N x 1 x H x W] or [H x W] (1 = hole; torch or numpy) -> the same layout and dtype at size (h, w),
    nearest-neighbour, values kept in {0, 1}."""
    as_numpy = isinstance(mask, np.ndarray)
    m = torch.from_numpy(np.ascontiguousarray(mask)) if as_numpy else mask
    if m.ndim not in (2, 4) or (m.ndim == 4 and m.shape[1] != 1):
        raise ValueError(f"latent_mask takes a mask [N x 1 x H x W] or [H x W], got {list(m.shape)}")
    batched = m if m.ndim == 4 else rearrange(m, "h w -> 1 1 h w")
    small = F.interpolate(batched.float(), size=tuple(size), mode="nearest")  # (N, 1, h, w)
    small = (small > 0.5).to(m.dtype)
    out = small if m.ndim == 4 else small[0, 0]  # (h, w) for an [H x W] mask
    return out.numpy() if as_numpy else out
