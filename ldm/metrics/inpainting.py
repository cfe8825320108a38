"""Inpainting scores (Sec. 4.5, Tab. 7, D.2.2): a blurred-surroundings baseline and how close a fill is to the original.

Legend: x the original uint8 image [N x 3 x H x W]; m the mask [N x 1 x H x W] (1 = hole, 0 = known); k = 1 - m the
known pixels; G_sigma a Gaussian blur; x_fill an inpainted image, equal to x where m = 0.

The baseline is normalized convolution (Knutsson and Westin): fill_sigma = G_sigma * (x k) / G_sigma * k, the blur of
the known pixels divided by the blur of the known mask, so a hole pixel gets a weighted mean of the known pixels
around it. Sigmas double from SIGMA_START; each hole pixel takes the smallest sigma at which enough of its Gaussian
neighbourhood is known. Scores: PSNR and SSIM over the whole image and inside the hole only (where the fill is the
only difference), mask coverage, and the grid original | mask | masked | baseline | model fill.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import Tensor, nn

from ldm.data.grids import LABEL_CHAR_WIDTH
from ldm.masks.shards import HOLE_FILL, masked_image
from ldm.metrics.perceptual import lpips_distances
from ldm.metrics.quality import MAX_PSNR_DB, psnr, ssim
from ldm.reports import quantiles

SIGMA_START = 1.0  # px; the first blur, then 2, 4, ... until every hole pixel is covered
SIGMA_GROWTH = 2.0  # each next sigma is this times the last
MIN_KNOWN_WEIGHT = 0.05  # a hole pixel is filled once >= 5% of its Gaussian neighbourhood is known pixels
TRUNCATE = 3.0  # the Gaussian kernel reaches TRUNCATE sigmas on each side
DATA_RANGE = 255.0  # uint8 images
# How the baseline filled its holes, as a report records it beside the baseline's scores.
BLUR_FILL = {"method": "normalized convolution: Gaussian blur of the known pixels / blur of the known mask",
             "sigma_start_px": SIGMA_START, "sigma_growth": SIGMA_GROWTH, "min_known_weight": MIN_KNOWN_WEIGHT,
             "truncate": TRUNCATE}
BASELINE, MODEL = "blur_fill", "ldm"  # the report's rows and the grid's columns of the two fills
COLUMN_TITLES = {"original": "original", "mask": "mask", "masked": "masked", BASELINE: "blurred fill (baseline)",
                 MODEL: "LDM fill"}


def _check(images: Tensor, masks: Tensor) -> Tensor:
    """The masks as bool [N x 1 x H x W], after checking both shapes."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be uint8 [N x 3 x H x W], got {images.dtype} {tuple(images.shape)}")
    expected = (images.shape[0], 1, *images.shape[2:])
    if tuple(masks.shape) != expected:
        raise ValueError(f"masks must be [N x 1 x H x W] = {list(expected)}, got {list(masks.shape)}")
    return masks.bool()


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of [N x C x H x W] float with zero padding (what normalized convolution needs)."""
    radius = max(1, math.ceil(TRUNCATE * sigma))
    taps = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    n, c = x.shape[:2]
    flat = rearrange(x, "n c h w -> (n c) 1 h w")
    flat = F.conv2d(flat, kernel.view(1, 1, 1, -1), padding=(0, radius))  # along W
    flat = F.conv2d(flat, kernel.view(1, 1, -1, 1), padding=(radius, 0))  # along H
    return rearrange(flat, "(n c) 1 h w -> n c h w", n=n, c=c)


def blur_fill(images: Tensor, masks: Tensor) -> Tensor:
    """uint8 [N x 3 x H x W] with each hole (masks [N x 1 x H x W], 1 = hole) filled by normalized convolution.

    Known pixels are kept exactly; every hole pixel is filled (an image with no known pixel at all is filled with
    the masks' HOLE_FILL grey). Deterministic: float64 on the CPU, no randomness.
    """
    hole = _check(images, masks).cpu()
    x = images.cpu().double()
    known = (~hole).double()  # k = 1 - m, [N x 1 x H x W]
    fill = torch.full_like(x, float(HOLE_FILL))
    todo = hole.clone()  # hole pixels not filled yet
    sigma, largest = SIGMA_START, max(images.shape[-2:])
    while todo.any():
        weight = gaussian_blur(known, sigma)  # G_sigma * k, [N x 1 x H x W]
        last = sigma >= largest  # the kernel spans the image: every pixel sees every known pixel
        ready = todo & ((weight >= MIN_KNOWN_WEIGHT) | (last & (weight > 0)))
        if ready.any():
            value = gaussian_blur(x * known, sigma) / weight.clamp_min(1e-300)  # normalized convolution
            fill = torch.where(ready, value, fill)
            todo &= ~ready
        if last:
            break  # what is left has no known pixel in its image: it keeps the grey
        sigma *= SIGMA_GROWTH
    out = torch.where(hole, fill.round().clamp(0, 255), x)
    return out.to(torch.uint8)


def hole_psnr(filled: Tensor, original: Tensor, masks: Tensor) -> Tensor:
    """Per-image PSNR in dB over the hole pixels only (uint8 [N x 3 x H x W], masks [N x 1 x H x W]): [N]."""
    hole = _check(original, masks).double()
    err = (filled.double() - original.double()).pow(2) * hole
    count = (hole.sum(dim=(1, 2, 3)) * 3).clamp_min(1)
    mse = err.sum(dim=(1, 2, 3)) / count
    floor = DATA_RANGE**2 / 10 ** (MAX_PSNR_DB / 10)
    return (10.0 * torch.log10(DATA_RANGE**2 / mse.clamp_min(floor))).float()


def hole_ssim(filled: Tensor, original: Tensor, masks: Tensor) -> Tensor:
    """Per-image mean of the SSIM map (Gaussian window 11, sigma 1.5) over the hole pixels: [N]."""
    from torchmetrics.functional.image import structural_similarity_index_measure  # deferred: slow import

    hole = _check(original, masks).float()
    _, full = structural_similarity_index_measure(filled.float(), original.float(), data_range=DATA_RANGE,
                                                  reduction="none", return_full_image=True)
    weight = repeat(hole, "n 1 h w -> n c h w", c=full.shape[1])
    return (full * weight).sum(dim=(1, 2, 3)) / weight.sum(dim=(1, 2, 3)).clamp_min(1)


def fill_scores(filled: Tensor, original: Tensor, masks: Tensor) -> dict[str, float]:
    """Means over the images of PSNR (dB) and SSIM, overall and inside the hole (`psnr_hole`, `ssim_hole`)."""
    _check(filled, masks)
    a, b = filled.float(), original.float()
    return {"psnr": round(float(psnr(a, b, DATA_RANGE).mean()), 4), "ssim": round(float(ssim(a, b, DATA_RANGE).mean()), 5),
            "psnr_hole": round(float(hole_psnr(filled, original, masks).mean()), 4),
            "ssim_hole": round(float(hole_ssim(filled, original, masks).mean()), 5)}


def score_fill(filled: Tensor, original: Tensor, masks: Tensor, *, perceptual: nn.Module | None = None,
               fidelity: Callable[[Tensor], dict[str, float]] | None = None, batch_size: int = 32) -> dict[str, float]:
    """Every score of one fill (uint8 [N x 3 x H x W]): `fill_scores`, LPIPS against the originals when a
    `perceptual` module (`ldm.metrics.perceptual.lpips_model`) is given, and `fidelity`'s (FID) when given."""
    scores = fill_scores(filled, original, masks)
    if perceptual is not None:
        scores["lpips"] = round(float(lpips_distances(perceptual, filled, original, batch_size).mean()), 5)
    if fidelity is not None:
        scores.update({name: round(value, 4) for name, value in fidelity(filled).items()})
    return scores


def coverage_stats(masks: Tensor) -> dict[str, object]:
    """Fraction of each image the mask hides: mean and quantiles (min, p25, median, p75, max)."""
    coverage = rearrange(masks.bool().double(), "n 1 h w -> n (h w)").mean(dim=1)
    return {"mean": round(float(coverage.mean()), 4), **quantiles(coverage.tolist())}


def grid_columns(original: Tensor, masks: Tensor, fills: dict[str, Tensor], count: int,
                 titles: dict[str, str] | None = None) -> dict[str, np.ndarray]:
    """Titled columns original | mask | masked | each fill, [M x H' x W' x 3] uint8 each, M = min(count, N).

    Tiles are enlarged (nearest) until the longest title fits above its column.
    """
    hole = rearrange(_check(original, masks)[:count].cpu().numpy().astype(np.uint8), "n 1 h w -> n h w")
    as_hwc = lambda x: rearrange(x[:count].cpu(), "n c h w -> n h w c").numpy()  # noqa: E731
    tiles = {"original": as_hwc(original), "mask": repeat(hole * np.uint8(255), "n h w -> n h w c", c=3),
             "masked": np.stack([masked_image(x, m) for x, m in zip(as_hwc(original), hole)]),
             **{name: as_hwc(fill) for name, fill in fills.items()}}
    titles = {**COLUMN_TITLES, **(titles or {})}
    factor = max(1, math.ceil(max(len(titles[name]) for name in tiles) * LABEL_CHAR_WIDTH / original.shape[-1]))
    return {titles[name]: x.repeat(factor, axis=1).repeat(factor, axis=2) for name, x in tiles.items()}


def row_labels(kinds: Sequence[str], masks: Tensor) -> list[str]:
    """A label per grid row: the mask's kind and the fraction it hides."""
    coverage = rearrange(masks.bool().double(), "n 1 h w -> n (h w)").mean(dim=1)
    return [f"{kind} {float(c):.0%}" for kind, c in zip(kinds, coverage)]
