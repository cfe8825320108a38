"""The seeded large-mask generator: a kind drawn by its proportion, then a mask of that kind within coverage bounds.

After LaMa's large-mask training generator (Suvorov et al. 2021, the LDM paper's
[85]; D.2.2 uses its code for the inpainting masks), which mixes thick, medium
and thin strokes and boxes and keeps at most half of the image hidden
(`max_tamper_area: 0.5`). Shapes: `ldm.masks.shapes`.

1. The kind is drawn once from `proportions`, so each kind appears in its
   proportion however often its shapes miss the coverage bounds.
2. Up to `attempts` masks of that kind are drawn until one hides a fraction of
   the image in [min_coverage, max_coverage].
3. If none does, the last one is grown (or shrunk) to the nearest bound: the
   background pixels closest to the hole join it (the hole pixels closest to the
   background leave it), by Euclidean distance, ties in raster order. The shape
   stays, its outline moves; the record says `adjusted`.

Everything comes from one seed (the stage derives it from the params seed and
the sample key), so a mask depends on nothing else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np

from ldm.config import Config
from ldm.masks.config import KINDS, MaskConfig, MaskKind
from ldm.masks.shapes import BOXES, STROKES, draw_boxes, draw_strokes


@dataclass(frozen=True)
class MaskRecord(Config):
    """How one mask was drawn: its kind, the fraction it hides, its seed, the draws taken, whether it was fitted."""

    section: ClassVar[str] = "mask"

    kind: MaskKind
    coverage: float  # hole pixels / (H x W)
    seed: int
    attempts: int  # draws taken (1..config.attempts)
    adjusted: bool  # grown or shrunk to a coverage bound after the last draw


def draw_shape(kind: MaskKind, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """One mask of `kind` -> [H x W] uint8, 1 = hole."""
    if kind == "box":
        return draw_boxes(height, width, BOXES, rng)
    return draw_strokes(height, width, STROKES[kind], rng)


def coverage_bounds(config: MaskConfig, pixels: int) -> tuple[int, int]:
    """The least and most hole pixels of an image of `pixels` pixels."""
    low, high = math.ceil(config.min_coverage * pixels - 1e-9), math.floor(config.max_coverage * pixels + 1e-9)
    if low > high:
        raise ValueError(f"no mask of {pixels} pixels hides between {config.min_coverage:g} and {config.max_coverage:g} "
                         "of the image; widen the coverage bounds")
    return low, high


def fit_coverage(mask: np.ndarray, low: int, high: int) -> np.ndarray:
    """[H x W] uint8 mask -> the same with `low` <= holes <= `high`: the nearest pixels join or leave the hole."""
    holes = int(mask.sum())
    if low <= holes <= high:
        return mask
    grow = holes < low
    # distanceTransform: each non-zero pixel's distance to the nearest zero one.
    source = (mask == 0) if grow else (mask != 0)
    distance = cv2.distanceTransform(source.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE).ravel()
    candidates = np.flatnonzero(source.ravel())
    order = candidates[np.argsort(distance[candidates], kind="stable")]
    fitted = mask.copy().ravel()
    fitted[order[: low - holes] if grow else order[: holes - high]] = 1 if grow else 0
    return fitted.reshape(mask.shape)


def draw_mask(height: int, width: int, config: MaskConfig, seed: int) -> tuple[np.ndarray, MaskRecord]:
    """A seeded large mask -> ([H x W] uint8, 1 = hole; its record)."""
    rng = np.random.default_rng(seed)
    shares = np.array([config.proportions[kind] for kind in KINDS], dtype=np.float64)
    kind = KINDS[int(rng.choice(len(KINDS), p=shares / shares.sum()))]
    low, high = coverage_bounds(config, height * width)
    for attempt in range(1, config.attempts + 1):
        mask = draw_shape(kind, height, width, rng)
        if low <= int(mask.sum()) <= high:
            break
    fitted = fit_coverage(mask, low, high)
    record = MaskRecord(kind=kind, coverage=float(fitted.mean()), seed=seed, attempts=attempt,
                        adjusted=fitted is not mask)
    return fitted, record
