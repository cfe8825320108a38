"""Pure health metrics for a trained autoencoder: latent statistics, codebook use, PSNR, SSIM."""

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


def psnr(x_rec: torch.Tensor, x: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Per-image PSNR in dB of [N x C x H x W] images spanning `data_range` ([-1, 1] -> 2): [N]."""
    mse = (x_rec.detach().double() - x.detach().double()).pow(2).mean(dim=(1, 2, 3))
    return (10.0 * torch.log10(data_range**2 / mse.clamp_min(1e-20))).float()


def ssim(x_rec: torch.Tensor, x: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Per-image SSIM (Gaussian window 11, sigma 1.5) of [N x C x H x W] images: [N]."""
    # Deferred: torchmetrics takes seconds to import and only this helper needs it.
    from torchmetrics.functional.image import structural_similarity_index_measure

    return structural_similarity_index_measure(
        x_rec.detach().float(), x.detach().float(), data_range=data_range, reduction="none"
    )
