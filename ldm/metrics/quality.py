"""Per-image reconstruction quality: PSNR and SSIM, for autoencoders, super-resolution and degradations."""

from __future__ import annotations

import torch

MAX_PSNR_DB = 100.0  # equal images (a flat black sky) have no finite PSNR; report this instead


def psnr(x_rec: torch.Tensor, x: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Per-image PSNR in dB of [N x C x H x W] images spanning `data_range` ([-1, 1]: 2, uint8: 255): [N]."""
    mse = (x_rec.detach().double() - x.detach().double()).pow(2).mean(dim=(1, 2, 3))
    floor = data_range**2 / 10 ** (MAX_PSNR_DB / 10)
    return (10.0 * torch.log10(data_range**2 / mse.clamp_min(floor))).float()


def ssim(x_rec: torch.Tensor, x: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Per-image SSIM (Gaussian window 11, sigma 1.5) of [N x C x H x W] images: [N]."""
    # Deferred: torchmetrics takes seconds to import and only this helper needs it.
    from torchmetrics.functional.image import structural_similarity_index_measure

    return structural_similarity_index_measure(
        x_rec.detach().float(), x.detach().float(), data_range=data_range, reduction="none"
    )
