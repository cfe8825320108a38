"""Resizing: the cv2 interpolations the BSR degradation draws from, and antialiased bicubic.

Legend
    img     [H x W x C] float32 image in [0, 1]
    size    (h, w) of the output, height first (cv2.resize takes (w, h): we convert here only)
    interp  name of a cv2 interpolation: "linear", "cubic" or "area"
"""

from __future__ import annotations

import math
from typing import Literal

import cv2
import numpy as np

Interp = Literal["linear", "cubic", "area"]

# The original draws random.choice([1, 2, 3]): INTER_LINEAR, INTER_CUBIC, INTER_AREA.
CV2_INTERPS: dict[Interp, int] = {
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
}
INTERP_NAMES: tuple[Interp, ...] = tuple(CV2_INTERPS)


def resize_cv2(img: np.ndarray, size: tuple[int, int], interp: Interp) -> np.ndarray:
    """Resize to `size` = (h, w) with a cv2 interpolation, keeping the channel axis."""
    h, w = size
    out = cv2.resize(img, (w, h), interpolation=CV2_INTERPS[interp])
    return out.reshape(h, w, -1) if out.ndim == 2 else out


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's and PIL's bicubic)."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return near + far


def _bicubic_taps(n_in: int, n_out: int, antialias: bool) -> tuple[np.ndarray, np.ndarray]:
    """Source indices and weights, both (n_out, taps), of a 1-D antialiased bicubic resize."""
    scale = n_out / n_in
    # Downscaling widens the kernel by 1/scale so it also low-passes (antialiasing).
    stretch = scale if (antialias and scale < 1) else 1.0
    width = 4.0 / stretch
    # Centre of output pixel j (0-based) in input coordinates, pixel centres at k + 0.5.
    centre = (np.arange(n_out, dtype=np.float64) + 0.5) / scale - 0.5
    left = np.floor(centre - width / 2.0).astype(np.int64) + 1
    taps = int(math.ceil(width)) + 1
    idx = left[:, None] + np.arange(taps)[None, :]  # (n_out, taps)
    w = stretch * _cubic(stretch * (centre[:, None] - idx))
    w = w / w.sum(axis=1, keepdims=True)
    # MATLAB pads symmetrically (edge repeated): -1 -> 0, n -> n - 1.
    period = 2 * n_in
    idx = np.mod(idx, period)
    idx = np.where(idx >= n_in, period - 1 - idx, idx)
    return idx, w.astype(np.float32)


def _resize_axis(img: np.ndarray, n_out: int, axis: int, antialias: bool) -> np.ndarray:
    """Bicubic resize of one axis of an [H x W x C] image by gather and weighted sum."""
    idx, w = _bicubic_taps(img.shape[axis], n_out, antialias)
    moved = np.moveaxis(img, axis, 0)  # (n_in, rest...)
    gathered = moved[idx]  # (n_out, taps, rest...)
    w = w.reshape(w.shape + (1,) * (moved.ndim - 1))
    out = (gathered * w).sum(axis=1)  # (n_out, rest...)
    return np.moveaxis(out, 0, axis)


def resize_bicubic_aa(img: np.ndarray, size: tuple[int, int], antialias: bool = True) -> np.ndarray:
    """MATLAB-style imresize(bicubic): separable cubic a = -0.5, antialiased when shrinking.

    Pure numpy gathers with a fixed summation order, so results do not depend
    on thread counts.
    """
    h, w = size
    out = _resize_axis(img.astype(np.float32, copy=False), h, 0, antialias)
    out = _resize_axis(out, w, 1, antialias)
    return np.ascontiguousarray(out, dtype=np.float32)
