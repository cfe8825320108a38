"""Codebook health of a VQ autoencoder (latent moments: ldm.latents.moments; PSNR/SSIM: ldm.metrics.quality)."""

from __future__ import annotations

import torch


def dead_code_fraction(usage: torch.Tensor) -> float:
    """Fraction of codebook entries never picked, from usage counts [|Z|]."""
    return float((usage == 0).sum()) / usage.numel()
