"""Properties of the single operations of ldm.degradation: kernels, blur, noise, JPEG, resize."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from skimage import data

from ldm.degradation.kernels import anisotropic_covariance, anisotropic_gaussian, isotropic_gaussian
from ldm.degradation.ops import add_noise, blur, jpeg, nearest_downsample
from ldm.degradation.resize import resize_bicubic_aa
from ldm.degradation.variants import NoiseConfig

H, W = 96, 160  # non-square, so a swapped height and width fails


def _photo_crop(name: str, h: int = H, w: int = W) -> np.ndarray:
    """Centre crop of a colour photograph that ships with scikit-image."""
    img = getattr(data, name)()
    top, left = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
    return np.ascontiguousarray(img[top : top + h, left : left + w, :3])


def _high_freq_energy(img: np.ndarray) -> float:
    """Mean squared Laplacian: energy at the highest spatial frequencies."""
    lap = cv2.Laplacian(img.astype(np.float32), cv2.CV_32F, borderType=cv2.BORDER_REFLECT_101)
    return float(np.mean(lap[4:-4, 4:-4] ** 2))


def test_kernels_are_normalised_and_symmetric():
    kernels = [isotropic_gaussian(7, 1.3), isotropic_gaussian(6, 0.5), anisotropic_gaussian(15, 0.7, 5.0, 0.4)]
    # Near-zero spreads on even grids (no centre pixel): the original's kernel underflows to 0.
    kernels += [isotropic_gaussian(6, 0.001), anisotropic_gaussian(8, 1.0, 1e-5, 1e-5), isotropic_gaussian(7, 0.0)]
    for k in kernels:
        assert k.sum() == pytest.approx(1.0, abs=1e-5) and (k >= 0).all()
        np.testing.assert_allclose(k, k[::-1, ::-1], atol=1e-7)  # point symmetric: correlation == convolution


@pytest.mark.parametrize("kernel", [isotropic_gaussian(7, 1.3), isotropic_gaussian(6, 0.8), anisotropic_gaussian(14, 0.4, 2, 1)])
def test_blur_equals_ndimage_mirror_convolution(kernel):
    """The original filters with scipy.ndimage.convolve(mode="mirror"); even sizes must align too."""
    img = np.random.default_rng(0).random((40, 56, 3), dtype=np.float32)
    ref = ndimage.convolve(img, kernel[:, :, None].astype(np.float64), mode="mirror")
    np.testing.assert_allclose(blur(img, kernel), ref, atol=1e-5)


def test_anisotropic_kernel_has_the_requested_covariance():
    ksize, theta, l1, l2 = 41, 0.6, 6.0, 1.5
    k = anisotropic_gaussian(ksize, theta, l1, l2).astype(np.float64)
    r = np.arange(ksize) - (ksize - 1) / 2
    y, x = np.meshgrid(r, r, indexing="ij")  # kernel[y, x]; covariance in (x, y) order as the original
    emp = np.array([[(k * x * x).sum(), (k * x * y).sum()], [(k * x * y).sum(), (k * y * y).sum()]])
    np.testing.assert_allclose(emp, anisotropic_covariance(theta, l1, l2), atol=1e-3)
    assert sorted(np.linalg.eigvalsh(emp)) == pytest.approx([l2, l1], abs=1e-3)


def test_blur_lowers_high_frequency_energy_monotonically():
    img = _photo_crop("chelsea").astype(np.float32) / 255
    energies = [_high_freq_energy(img)] + [_high_freq_energy(blur(img, isotropic_gaussian(15, s))) for s in (0.5, 1, 2)]
    assert all(a > b for a, b in zip(energies, energies[1:]))
    assert energies[-1] < 0.1 * energies[0]
    aniso = blur(img, anisotropic_gaussian(15, 0.3, 4.0, 4.0))
    assert _high_freq_energy(aniso) < 0.2 * energies[0]


@pytest.mark.parametrize("sf", [2, 3, 4])
def test_shifted_gaussian_samples_block_centres(sf):
    ramp = np.arange(48, dtype=np.float32)[None, :, None].repeat(24, 0).repeat(3, 2) / 48
    for sigma in (0.3, 1.5):
        out = nearest_downsample(ramp, sigma, sf, ksize=25)
        centres = (np.arange(out.shape[1]) * sf + (sf - 1) / 2) / 48
        inner = slice(8 // sf + 1, out.shape[1] - 8 // sf - 1)  # away from the reflected border
        np.testing.assert_allclose(out[out.shape[0] // 2, inner, 0], centres[inner], atol=1e-4)


@pytest.mark.parametrize("kind", ["color", "grey", "correlated"])
def test_noise_std_matches_the_record(kind):
    probabilities = {"color": (1.0, 0.0), "grey": (0.0, 1.0), "correlated": (0.0, 0.0)}[kind]
    cfg = NoiseConfig(level_min=5, level_max=20, p_color=probabilities[0], p_grey=probabilities[1])
    flat = np.full((128, 128, 3), 0.5, np.float32)  # far from the clip at 0 and 1
    for s in range(6):
        out, rec = add_noise(flat, np.random.default_rng(s), cfg)
        assert rec["kind"] == kind
        noise = (out - flat).reshape(-1, 3) * 255
        expected = rec["channel_sigma"] if kind == "correlated" else [rec["sigma"]] * 3
        np.testing.assert_allclose(noise.std(axis=0), expected, rtol=0.05, atol=0.05)
        corr = np.corrcoef(noise.T)
        if kind == "grey":
            assert corr[0, 1] > 0.999 and cfg.level_min <= rec["sigma"] <= cfg.level_max
        elif kind == "color":
            assert np.abs(corr[np.triu_indices(3, 1)]).max() < 0.05


def test_jpeg_quality_orders_the_error():
    img = _photo_crop("coffee").astype(np.float32) / 255
    errors = [np.mean((jpeg(img, q) - img) ** 2) for q in (30, 60, 95)]
    assert errors[0] > errors[1] > errors[2] > 0


def test_bicubic_matches_pil_antialiased_bicubic():
    img = _photo_crop("rocket")[..., 1].astype(np.float32) / 255
    ours = resize_bicubic_aa(img[:, :, None], (H // 4, W // 4))[:, :, 0]
    ref = np.asarray(Image.fromarray(img, mode="F").resize((W // 4, H // 4), Image.BICUBIC))
    np.testing.assert_allclose(ours[2:-2, 2:-2], ref[2:-2, 2:-2], atol=1e-5)  # borders: PIL renormalises
