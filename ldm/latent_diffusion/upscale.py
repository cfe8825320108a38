"""Super-resolution with an LDM-BSR model (Sec. 4.4, C.7.1): sampling from an LR image, tiled upscaling of any
image (convolutional sampling, Sec. C.1), and the scores beside bicubic (D.3, Tab. 5).

Legend: lr the LR image [N x 3 x h x w] in [-1, 1]; s the SR scale (HR side / LR side); f the first stage's
downsampling; a tile of t LR pixels becomes a latent of t * s / f.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ldm.data.loader import to_tensor, to_uint8
from ldm.diffusion.config import SamplerSettings
from ldm.errors import InvalidInput
from ldm.latent_diffusion.checkpoint import LoadedLDM
from ldm.latent_diffusion.generate import Decoder, conditions, decode_latents, generate_latents
from ldm.metrics.quality import psnr, ssim


Scorer = Callable[[torch.Tensor], dict[str, float]]  # uint8 images [N x 3 x H x W] -> named scores


def check_sr_model(loaded: LoadedLDM, where: str) -> None:
    """Refuse a model that is not concat-conditioned (super-resolution)."""
    if loaded.model.config.conditioning.kind != "concat":
        raise InvalidInput(f"{where} is not a super-resolution (concat-conditioned) model")


def upscale_latents(loaded: LoadedLDM, lr: torch.Tensor, seeds: Sequence[int], settings: SamplerSettings,
                    latent_size: tuple[int, int]) -> torch.Tensor:
    """Model latents [N x C x h x w] for LR images [N x 3 x h_lr x w_lr] in [-1, 1] (concat conditioning)."""
    cond, null = conditions(loaded.model, concat={"lr": lr})
    return generate_latents(loaded.model, cond, null, seeds, settings, size=latent_size)


@torch.no_grad()
def evaluate_sr(loaded: LoadedLDM, decode: Decoder, hr: torch.Tensor, lr: torch.Tensor, *, settings: SamplerSettings,
                seed: int, batch_size: int, downsample: int, fidelity: Scorer | None = None,
                ) -> tuple[dict[str, Any], torch.Tensor]:
    """PSNR/SSIM of SR and of bicubic upsampling against HR [N x 3 x H x W] in [-1, 1]; the report and a grid
    uint8 [3M x 3 x H x W] of bicubic | SR | HR rows for the first M <= 8 pairs.

    fidelity: scores of a uint8 image set [N x 3 x H x W] (FID against a reference, IS: Tab. 11), added to the
    SR entry and to the bicubic one.
    """
    size = (hr.shape[-2] // downsample, hr.shape[-1] // downsample)  # the HR image's latent
    outs = []
    for start in range(0, len(hr), batch_size):
        end = min(start + batch_size, len(hr))
        z = upscale_latents(loaded, lr[start:end], [seed + i for i in range(start, end)], settings, size)
        outs.append(decode_latents(decode, z, loaded.scale_factor))
    sr = torch.cat(outs).float() / 127.5 - 1.0  # (N, 3, H, W)
    bicubic = F.interpolate(lr, size=hr.shape[-2:], mode="bicubic", align_corners=False).clamp(-1, 1)
    rows = torch.cat([torch.stack([b, s, h]) for b, s, h in zip(bicubic[:8], sr[:8], hr[:8])])  # (3M, 3, H, W)
    grid = _as_uint8(rows)
    report = {"pairs": len(hr), "sampling": settings.to_dict(), "seeds": [seed, seed + len(hr) - 1],
              "psnr": float(psnr(sr, hr).mean()), "ssim": float(ssim(sr, hr).mean()),
              "bicubic": {"psnr": float(psnr(bicubic, hr).mean()), "ssim": float(ssim(bicubic, hr).mean())},
              "grid": "bicubic | SR | HR per row"}
    if fidelity is not None:
        report.update(fidelity(_as_uint8(sr)))
        report["bicubic"].update(fidelity(_as_uint8(bicubic)))
    return report, grid


def _as_uint8(x: torch.Tensor) -> torch.Tensor:
    """[N x 3 x H x W] in [-1, 1] -> uint8 [N x 3 x H x W]."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def _ramp(n: int, overlap: int) -> np.ndarray:
    """Blend weights along one axis: linear ramps of `overlap` pixels at both ends, 1 between."""
    w = np.ones(n)
    if overlap:
        ramp = (np.arange(overlap) + 1) / (overlap + 1)
        w[:overlap], w[-overlap:] = ramp, ramp[::-1]
    return w


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of side `tile` sharing `overlap` pixels that cover [0, size)."""
    if size <= tile:
        return [0]
    return sorted(set(list(range(0, size - tile, tile - overlap)) + [size - tile]))


@torch.no_grad()
def upscale_image(loaded: LoadedLDM, decode: Decoder, image: np.ndarray, *, settings: SamplerSettings, seed: int,
                  tile: int, overlap: int, downsample: int, progress: bool = True) -> np.ndarray:
    """[h x w x 3] uint8 -> [s*h' x s*w' x 3] uint8 (h', w' cut to whole latent pixels); tiles of `tile` LR pixels
    overlapping by `overlap`, each sampled at its own size (seed + tile index) and blended with linear ramps."""
    scale = loaded.card.sr_scale or 4
    unit = max(1, downsample // scale)  # LR pixels per latent pixel must be whole
    h, w = (image.shape[0] // unit) * unit, (image.shape[1] // unit) * unit
    lr = to_tensor(image[:h, :w])[None]  # (1, 3, h, w)
    tile, overlap = min(tile, h, w) // unit * unit, overlap // unit * unit
    out, weight = np.zeros((h * scale, w * scale, 3)), np.zeros((h * scale, w * scale, 1))
    tops, lefts = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
    for n, (top, left) in enumerate(tqdm([(t, l) for t in tops for l in lefts], desc="upscale", unit="tile",
                                         disable=not progress)):
        th, tw = min(tile, h), min(tile, w)
        patch = lr[..., top : top + th, left : left + tw]
        z = upscale_latents(loaded, patch, [seed + n], settings, (th * scale // downsample, tw * scale // downsample))
        hr = to_uint8(decode_latents(decode, z, loaded.scale_factor).float() / 127.5 - 1)[0].astype(np.float64)
        ramp = np.outer(_ramp(th * scale, overlap * scale if len(tops) > 1 else 0),
                        _ramp(tw * scale, overlap * scale if len(lefts) > 1 else 0))[..., None]
        out[top * scale : (top + th) * scale, left * scale : (left + tw) * scale] += hr * ramp
        weight[top * scale : (top + th) * scale, left * scale : (left + tw) * scale] += ramp
    return np.clip(np.rint(out / np.maximum(weight, 1e-8)), 0, 255).astype(np.uint8)
