"""Gaussian blur kernels of the BSR degradation (Zhang et al. 2021, Sec. 3.1).

Legend
    ksize   side of the square kernel in pixels (odd or even)
    sigma   standard deviation of an isotropic Gaussian, in pixels
    theta   rotation of the anisotropic Gaussian's first axis, radians in [0, pi)
    l1, l2  eigenvalues (variances, pixels^2) of the anisotropic covariance
    shift   sub-pixel offset of a kernel's peak towards the bottom right

Every kernel is float32, sums to 1 and is point-symmetric about its centre
(except the shifted one), so correlation (cv2.filter2D) equals convolution.
Exponents are taken relative to the kernel's smallest one, so a near-zero
variance on an even-sized grid (no centre pixel) gives a box over the nearest
pixels; the original's all-zero kernel there blackens the image (or NaN).
"""

from __future__ import annotations

import numpy as np

# A variance this small turns a Gaussian into a delta; sampled values of 0 are
# possible (uniform draws in [0, max)), and would divide by zero.
MIN_VARIANCE = 1e-6


def _centred_grid(ksize: int) -> np.ndarray:
    """Pixel offsets from the kernel centre, (ksize,) float64."""
    return np.arange(ksize, dtype=np.float64) - (ksize - 1) / 2.0


def _normalise(k: np.ndarray) -> np.ndarray:
    """Zero the negligible tail (as MATLAB's fspecial) and make the kernel sum to 1."""
    k = np.where(k < np.finfo(np.float64).eps * k.max(), 0.0, k)
    return (k / k.sum()).astype(np.float32)


def isotropic_gaussian(ksize: int, sigma: float) -> np.ndarray:
    """Isotropic Gaussian kernel, [ksize x ksize], as MATLAB fspecial('gaussian')."""
    r2 = _centred_grid(ksize) ** 2
    var = max(sigma * sigma, MIN_VARIANCE)
    g = np.exp(-(r2 - r2.min()) / (2.0 * var))  # peak 1 even for a tiny sigma on an even grid
    return _normalise(np.outer(g, g))  # separable: outer product of 1-D Gaussians


def anisotropic_covariance(theta: float, l1: float, l2: float) -> np.ndarray:
    """Covariance V diag(l1, l2) V^-1 with V the reflection whose first column is at angle theta."""
    c, s = np.cos(theta), np.sin(theta)
    v = np.array([[c, s], [s, -c]])  # a reflection: v^-1 == v
    d = np.diag([max(l1, MIN_VARIANCE), max(l2, MIN_VARIANCE)])
    return v @ d @ v


def anisotropic_gaussian(ksize: int, theta: float, l1: float, l2: float) -> np.ndarray:
    """Anisotropic Gaussian kernel, [ksize x ksize], covariance from anisotropic_covariance."""
    inv = np.linalg.inv(anisotropic_covariance(theta, l1, l2))
    r = _centred_grid(ksize)
    y, x = np.meshgrid(r, r, indexing="ij")
    # Quadratic form [x y] inv [x y]^T; the original evaluates the pdf at (cx, cy).
    q = inv[0, 0] * x * x + (inv[0, 1] + inv[1, 0]) * x * y + inv[1, 1] * y * y
    return _normalise(np.exp(-0.5 * (q - q.min())))


def _shift_1d(g: np.ndarray, shift: float) -> np.ndarray:
    """Linear interpolation of g at positions i - shift, clamped to the ends."""
    pos = np.clip(np.arange(g.size, dtype=np.float64) - shift, 0, g.size - 1)
    return np.interp(pos, np.arange(g.size, dtype=np.float64), g)


def shifted_gaussian(ksize: int, sigma: float, shift: float) -> np.ndarray:
    """Isotropic Gaussian moved by `shift` px down and right by bilinear resampling.

    With shift = (sf - 1) / 2, filtering then keeping every sf-th pixel samples
    the centre of each sf x sf block ("shifted Gaussian + nearest" downsampling).
    The original shifts with bilinear scipy interp2d, which we reproduce per axis.
    """
    r = _centred_grid(ksize)
    g = np.exp(-(r * r) / (2.0 * max(sigma * sigma, MIN_VARIANCE)))
    g = g / g.max()
    # fspecial thresholds the 2-D kernel before the shift; the threshold is
    # eps * max, below float32 resolution, so thresholding after is the same.
    gs = _shift_1d(g, shift)
    k = np.outer(gs, gs)
    return (k / k.sum()).astype(np.float32)
