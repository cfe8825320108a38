"""Super-resolution scores of an LDM-SR model on the val pairs: PSNR and SSIM beside the bicubic baseline (D.3, Tab. 5)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torchvision.utils import make_grid, save_image

from ldm.data.images import decode_image
from ldm.data.loader import to_tensor
from ldm.data.shards import read_shards
from ldm.metrics import psnr, ssim
from ldm.unet.checkpoint import LoadedLDM
from ldm.unet.generate import SamplerSettings, conditions, decode_latents, generate_latents


def _pairs(urls: list[str], limit: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(HR [N x 3 x H x W], LR [N x 3 x h x w]) in [-1, 1], the first `limit` pairs in order."""
    hr, lr = [], []
    for sample in read_shards(urls):
        hr.append(to_tensor(decode_image(sample["hr.png"])[0]))
        lr.append(to_tensor(decode_image(sample["lr.png"])[0]))
        if len(hr) >= limit:
            break
    if not hr:
        raise ValueError(f"{urls[0] if urls else 'the pair shards'}: no val pairs to super-resolve")
    return torch.stack(hr), torch.stack(lr)


def upscale_latents(loaded: LoadedLDM, lr: torch.Tensor, seeds: list[int], settings: SamplerSettings,
                    latent_size: tuple[int, int]) -> torch.Tensor:
    """Model latents [N x C x h x w] for LR images [N x 3 x h_lr x w_lr] in [-1, 1] (concat conditioning)."""
    cond, null = conditions(loaded.model, concat={"lr": lr})
    return generate_latents(loaded.model, cond, null, seeds, settings, size=latent_size)


@torch.no_grad()
def evaluate_sr(loaded: LoadedLDM, decode: Callable[[torch.Tensor], torch.Tensor], urls: list[str], *, samples: int,
                settings: SamplerSettings, seed: int, batch_size: int, downsample: int, grid: Path) -> dict[str, Any]:
    """PSNR/SSIM of SR and of bicubic upsampling against HR; a grid of bicubic | SR | HR rows."""
    if loaded.model.config.conditioning.kind != "concat":
        raise ValueError("models/ldm_sr is not a concat-conditioned (super-resolution) model")
    hr, lr = _pairs(urls, samples)
    size = (hr.shape[-2] // downsample, hr.shape[-1] // downsample)  # the HR image's latent
    outs = []
    for start in range(0, len(hr), batch_size):
        end = min(start + batch_size, len(hr))
        z = upscale_latents(loaded, lr[start:end], [seed + i for i in range(start, end)], settings, size)
        outs.append(decode_latents(decode, z, loaded.scale_factor))
    sr = torch.cat(outs).float() / 127.5 - 1.0  # (N, 3, H, W)
    bicubic = F.interpolate(lr, size=hr.shape[-2:], mode="bicubic", align_corners=False).clamp(-1, 1)
    rows = [torch.stack([b, s, h]) for b, s, h in zip(bicubic[:8], sr[:8], hr[:8])]
    grid.parent.mkdir(parents=True, exist_ok=True)
    save_image(make_grid(torch.cat(rows), nrow=3, padding=2, normalize=True, value_range=(-1, 1)), grid)
    return {"pairs": len(hr), "sampling": {**settings.__dict__}, "seeds": [seed, seed + len(hr) - 1],
            "psnr": float(psnr(sr, hr).mean()), "ssim": float(ssim(sr, hr).mean()),
            "bicubic": {"psnr": float(psnr(bicubic, hr).mean()), "ssim": float(ssim(bicubic, hr).mean())},
            "grid": "bicubic | SR | HR per row"}
