"""Pure health metrics for a trained autoencoder: latent statistics and codebook use (PSNR/SSIM: ldm.metrics.quality)."""

from __future__ import annotations

import torch


def latent_channel_stats(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of latents [N x C x h x w] over batch and space: ([C], [C])."""
    z = z.detach().double()
    return z.mean(dim=(0, 2, 3)).float(), z.std(dim=(0, 2, 3), unbiased=False).float()


def latent_scale_factor(z: torch.Tensor) -> float:
    """1 / sigma_hat with sigma_hat^2 the variance of all latent entries (Appendix F)."""
    sigma = z.detach().double().flatten().std(unbiased=False)
    return float(1.0 / sigma)


def dead_code_fraction(usage: torch.Tensor) -> float:
    """Fraction of codebook entries never picked, from usage counts [|Z|]."""
    return float((usage == 0).sum()) / usage.numel()
