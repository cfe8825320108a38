"""The random operations of the BSR degradation; each returns (image, record of what it drew).

Legend
    img     [H x W x 3] float32 image in [0, 1], RGB
    rng     numpy Generator: the only source of randomness
    sf      scale factor still to go (4, or 2 after the 1/2 pre-downsample)
    record  JSON-able dict {"op": name, ...sampled parameters}; noise levels in /255 units

Deterministic pieces (blur, jpeg, nearest_downsample) take explicit parameters so
tests can drive them; the `random_*` functions draw parameters and call them.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from ldm.degradation.kernels import anisotropic_gaussian, isotropic_gaussian, shifted_gaussian
from ldm.degradation.resize import INTERP_NAMES, Interp, resize_bicubic_aa, resize_cv2
from ldm.degradation.variants import BlurConfig, DownsampleConfig, JpegConfig, NoiseConfig

Record = dict[str, Any]


def _choose_interp(rng: np.random.Generator) -> Interp:
    """One of linear / cubic / area, uniformly (the original's random.choice([1, 2, 3]))."""
    return INTERP_NAMES[int(rng.integers(len(INTERP_NAMES)))]


def _clip(img: np.ndarray) -> np.ndarray:
    """Clip to [0, 1] as float32."""
    return np.clip(img, 0.0, 1.0).astype(np.float32, copy=False)


def blur(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Filter each channel with `kernel`, mirror border without edge repeat (ndimage 'mirror')."""
    # Anchor (k - 1) // 2: for even sizes the pixel before the middle, where
    # ndimage.convolve puts it (cv2's default k // 2 would shift by one pixel).
    anchor = ((kernel.shape[1] - 1) // 2, (kernel.shape[0] - 1) // 2)
    return cv2.filter2D(img, -1, kernel, anchor=anchor, borderType=cv2.BORDER_REFLECT_101)


def fit_ksize(ksize: int, height: int, width: int) -> int:
    """Largest usable kernel side: the kernel radius must stay below the image side."""
    return min(ksize, 2 * min(height, width) - 1)


def random_blur(img: np.ndarray, rng: np.random.Generator, cfg: BlurConfig, sf: int) -> tuple[np.ndarray, Record]:
    """Isotropic or anisotropic Gaussian blur with random size and spread (add_blur)."""
    h, w = img.shape[:2]
    if rng.random() < cfg.p_aniso:
        ksize = int(cfg.aniso_ksizes[int(rng.integers(len(cfg.aniso_ksizes)))])
        l1 = float(cfg.aniso_eig_max(sf) * rng.random())
        l2 = float(cfg.aniso_eig_max(sf) * rng.random())
        theta = float(rng.random() * np.pi)
        used = fit_ksize(ksize, h, w)
        kernel = anisotropic_gaussian(used, theta, l1, l2)
        rec: Record = {"op": "blur", "kind": "aniso", "ksize": used, "theta": theta, "l1": l1, "l2": l2}
    else:
        ksize = int(cfg.iso_ksizes[int(rng.integers(len(cfg.iso_ksizes)))])
        sigma = float(cfg.iso_sigma_max(sf) * rng.random())
        used = fit_ksize(ksize, h, w)
        kernel = isotropic_gaussian(used, sigma)
        rec = {"op": "blur", "kind": "iso", "ksize": used, "sigma": sigma}
    if used != ksize:
        rec["ksize_sampled"] = ksize  # image smaller than the kernel: shrunk, see fit_ksize
    return blur(img, kernel), rec


def nearest_downsample(img: np.ndarray, sigma: float, sf: int, ksize: int) -> np.ndarray:
    """Blur with a Gaussian shifted to the block centre, then keep every sf-th pixel."""
    kernel = shifted_gaussian(ksize, sigma, shift=(sf - 1) / 2.0)
    return blur(img, kernel)[::sf, ::sf]


def random_downsample(
    img: np.ndarray, rng: np.random.Generator, cfg: DownsampleConfig, sf: int
) -> tuple[np.ndarray, Record]:
    """Random resize by 1/U(1, 2 sf), or shifted Gaussian + nearest by sf ("downsample2")."""
    h, w = img.shape[:2]
    if rng.random() < cfg.p_resize:
        factor = float(rng.uniform(1.0, 2.0 * sf))
        size = (max(1, int(h / factor)), max(1, int(w / factor)))
        interp = _choose_interp(rng)
        out = resize_cv2(img, size, interp)
        rec: Record = {"op": "downsample", "kind": "resize", "factor": factor, "interp": interp}
    else:
        sigma = float(rng.uniform(cfg.shifted_sigma_min, cfg.shifted_sigma_per_sf * sf))
        out = nearest_downsample(img, sigma, sf, cfg.shifted_ksize)
        rec = {"op": "downsample", "kind": "shifted_gaussian", "sigma": sigma, "ksize": cfg.shifted_ksize, "stride": sf}
    rec["size"] = list(out.shape[:2])
    return _clip(out), rec


def random_resize(img: np.ndarray, rng: np.random.Generator, size: tuple[int, int]) -> tuple[np.ndarray, Record]:
    """Resize to the LR size with a random interpolation ("downsample3")."""
    interp = _choose_interp(rng)
    out = resize_cv2(img, size, interp)
    return _clip(out), {"op": "resize", "interp": interp, "size": list(size)}


def random_predownsample(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Record]:
    """Halve the image: a random cv2 interpolation or MATLAB antialiased bicubic, 50/50."""
    h, w = img.shape[:2]
    if rng.random() < 0.5:
        interp = _choose_interp(rng)
        out = resize_cv2(img, (h // 2, w // 2), interp)
        rec: Record = {"op": "predownsample", "interp": interp}
    else:
        out = resize_bicubic_aa(img, (-(-h // 2), -(-w // 2)))
        rec = {"op": "predownsample", "interp": "bicubic_aa"}
    rec["size"] = list(out.shape[:2])
    return _clip(out), rec


def _orthonormal_basis(a: np.ndarray) -> np.ndarray:
    """Orthonormal basis of the range of `a` (scipy.linalg.orth) from its SVD."""
    u, s, _ = np.linalg.svd(a)
    rank = int((s > max(a.shape) * np.finfo(s.dtype).eps * s.max()).sum())
    return u[:, :rank]


def add_noise(img: np.ndarray, rng: np.random.Generator, cfg: NoiseConfig) -> tuple[np.ndarray, Record]:
    """Additive Gaussian noise: independent per channel, shared grey, or channel-correlated."""
    h, w = img.shape[:2]
    level = int(rng.integers(cfg.level_min, cfg.level_max + 1))
    branch = rng.random()
    if branch > 1.0 - cfg.p_color:
        noise = rng.standard_normal((h, w, 3), dtype=np.float32) * np.float32(level / 255.0)
        rec: Record = {"op": "noise", "kind": "color", "sigma": level}
    elif branch < cfg.p_grey:
        noise = rng.standard_normal((h, w, 1), dtype=np.float32) * np.float32(level / 255.0)
        rec = {"op": "noise", "kind": "grey", "sigma": level}
    else:
        # Covariance |L^2 U^T D U| with L the top level (not the drawn one), as the original.
        scale = cfg.level_max / 255.0
        d = np.diag(rng.random(3))
        u = _orthonormal_basis(rng.random((3, 3)))
        cov = np.abs(scale * scale * (u.T @ d @ u))
        # The elementwise |.| can leave a tiny negative eigenvalue; sample its PSD part.
        eig, vec = np.linalg.eigh(cov)
        factor = (vec * np.sqrt(np.clip(eig, 0.0, None))).astype(np.float32)  # cov ~ factor factor^T
        z = rng.standard_normal((h * w, 3), dtype=np.float32)
        noise = (z @ factor.T).reshape(h, w, 3)
        channel_sigma = [float(255.0 * np.sqrt(v)) for v in np.einsum("ij,ij->i", factor, factor)]
        rec = {"op": "noise", "kind": "correlated", "sigma": max(channel_sigma), "channel_sigma": channel_sigma}
    return _clip(img + noise), rec


def to_uint8(img: np.ndarray) -> np.ndarray:
    """[0, 1] float to uint8 with rounding (the original's single2uint)."""
    return np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode as JPEG at `quality` with OpenCV's libjpeg (BGR order, as cv2 expects)."""
    bgr = np.ascontiguousarray(to_uint8(img)[..., ::-1])
    ok, buf = cv2.imencode(".jpg", bgr, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise RuntimeError(f"cv2.imencode failed on an image of shape {bgr.shape}")
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return np.ascontiguousarray(decoded[..., ::-1], dtype=np.float32) / np.float32(255.0)


def random_jpeg(img: np.ndarray, rng: np.random.Generator, cfg: JpegConfig, *, final: bool) -> tuple[np.ndarray, Record]:
    """JPEG at a quality drawn uniformly from the variant's inclusive range."""
    quality = int(rng.integers(cfg.quality_min, cfg.quality_max + 1))
    return jpeg(img, quality), {"op": "jpeg", "quality": quality, "final": final}
