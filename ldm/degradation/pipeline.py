"""`degrade`: input checks, then the bicubic shortcut or the shuffled BSR pipeline (Sec. C.7.1).

Legend
    hr      [H x W x 3] uint8 input, cropped so H and W are multiples of `scale`
    lr      [H/scale x W/scale x 3] uint8 output
    sf      scale factor still to go inside the BSR pipeline (scale, or scale/2
            after the pre-downsample)
    record  {"variant", "scale", "seed", "hr_size", "lr_size", "ops": [...]}: every
            operation applied, in order, with what it drew (see ops.py)

BSR order (Zhang et al. 2021, BSRGAN): optional 1/2 pre-downsample (p 0.25, only
at scale 4), then blur x passes, "downsample" (random resize or shifted Gaussian
+ nearest), "resize" to the LR size, Gaussian noise and JPEG (p 0.9) in a random
order with "downsample" kept before "resize"; the camera-sensor noise is
disabled, as in the LDM code. A final JPEG always runs.

Bad input: grey (H x W or H x W x 1) is repeated to 3 channels; H and W are
centre-cropped to multiples of `scale`; a side below MIN_LR_SIDE * scale, a
dtype other than uint8, other channel counts, an unknown variant or scale raise
DegradationError. Blur kernels larger than the (already downsampled) image are
shrunk to fit and recorded with "ksize_sampled". Should the LR size ever differ
from (H/scale, W/scale) a "fit_size" resize fixes it, before the final JPEG.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

import numpy as np

from ldm.degradation.ops import (
    Record,
    add_noise,
    random_blur,
    random_downsample,
    random_jpeg,
    random_predownsample,
    random_resize,
    to_uint8,
)
from ldm.degradation.resize import resize_bicubic_aa, resize_cv2
from ldm.degradation.variants import VARIANT_CONFIGS, VARIANTS, Scale, VariantConfig, VariantName
from ldm.errors import UserError

SCALES: tuple[int, ...] = get_args(Scale)
MIN_LR_SIDE = 8  # one JPEG block; keeps every intermediate image at least 2 px


class DegradationError(UserError, ValueError):
    """An image, scale or variant that `degrade` cannot work with; the message says why."""


Step = Literal["blur", "downsample", "resize", "noise", "jpeg"]


def _variant_config(variant: str) -> VariantConfig:
    """Look up a variant by name, or fail naming the allowed ones."""
    if variant not in VARIANT_CONFIGS:
        raise DegradationError(f"unknown degradation variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    return VARIANT_CONFIGS[variant]


def _check_scale(scale: object) -> int:
    """Accept an integer scale in SCALES, or fail naming the allowed ones."""
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or int(scale) not in SCALES:
        raise DegradationError(f"scale must be one of {SCALES}, got {scale!r}")
    return int(scale)


def _as_rgb(image: object, ops: list[Record]) -> np.ndarray:
    """Validate dtype and layout; repeat a grey image to 3 channels (recorded)."""
    if not isinstance(image, np.ndarray):
        raise DegradationError(f"image must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise DegradationError(f"image must be uint8 in [0, 255], got dtype {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3):
        raise DegradationError(f"image must be H x W, H x W x 1 or H x W x 3, got shape {image.shape}")
    if image.shape[2] == 1:
        ops.append({"op": "to_rgb", "from_channels": 1})
        image = np.repeat(image, 3, axis=2)
    return image


def _crop_to_multiple(img: np.ndarray, scale: int, ops: list[Record]) -> np.ndarray:
    """Centre-crop H and W down to multiples of scale (recorded), after checking the minimum."""
    h, w = img.shape[:2]
    min_side = MIN_LR_SIDE * scale
    if min(h, w) < min_side:
        raise DegradationError(
            f"image of {h} x {w} (H x W) is too small for scale {scale}: each side must be "
            f"at least {min_side} px (LR at least {MIN_LR_SIDE} x {MIN_LR_SIDE})"
        )
    h2, w2 = h - h % scale, w - w % scale
    if (h2, w2) == (h, w):
        return img
    top, left = (h - h2) // 2, (w - w2) // 2
    ops.append({"op": "crop_to_multiple", "anchor": "center", "from": [h, w], "to": [h2, w2], "offset": [top, left]})
    return img[top : top + h2, left : left + w2]


def _shuffled_steps(rng: np.random.Generator, blur_passes: int) -> list[Step]:
    """Random order of the steps with "downsample" moved before "resize" (swap, as the original)."""
    steps: list[Step] = ["blur"] * blur_passes + ["downsample", "resize", "noise", "jpeg"]
    order = [steps[i] for i in rng.permutation(len(steps))]
    i, j = order.index("downsample"), order.index("resize")
    if i > j:
        order[i], order[j] = order[j], order[i]
    return order


def _fit_size(img: np.ndarray, size: tuple[int, int], ops: list[Record]) -> np.ndarray:
    """Resize to exactly `size` if an earlier step rounded differently (recorded)."""
    if img.shape[:2] == size:
        return img
    ops.append({"op": "fit_size", "from": list(img.shape[:2]), "to": list(size), "interp": "area"})
    return np.clip(resize_cv2(img, size, "area"), 0.0, 1.0)


def _bsr(img: np.ndarray, rng: np.random.Generator, cfg: VariantConfig, scale: int, ops: list[Record]) -> np.ndarray:
    """The BSR degradation of a [H x W x 3] float image down to [H/scale x W/scale x 3]."""
    assert cfg.blur and cfg.downsample and cfg.noise and cfg.jpeg
    lr_size = (img.shape[0] // scale, img.shape[1] // scale)
    sf = scale
    if scale in cfg.predownsample_scales and rng.random() < cfg.p_predownsample:
        img, rec = random_predownsample(img, rng)
        ops.append(rec)
        sf = scale // 2
    target = lr_size
    for step in _shuffled_steps(rng, cfg.blur.passes):
        if step == "blur":
            img, rec = random_blur(img, rng, cfg.blur, sf)
        elif step == "downsample":
            target = (img.shape[0] // sf, img.shape[1] // sf)  # the original int(1 / sf * a), exactly
            img, rec = random_downsample(img, rng, cfg.downsample, sf)
        elif step == "resize":
            img, rec = random_resize(img, rng, target)
        elif step == "noise":
            img, rec = add_noise(img, rng, cfg.noise)
        elif rng.random() < cfg.jpeg.p_in_order:
            img, rec = random_jpeg(img, rng, cfg.jpeg, final=False)
        else:
            continue
        ops.append(rec)
    img = _fit_size(img, lr_size, ops)
    img, rec = random_jpeg(img, rng, cfg.jpeg, final=True)
    ops.append(rec)
    return img


def degrade(
    image: np.ndarray,
    *,
    scale: int = 4,
    variant: VariantName = "bsr_light",
    seed: int | np.random.Generator = 0,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Degrade a [H x W x 3] uint8 image to [H/scale x W/scale x 3] uint8; returns (lr, record).

    All randomness comes from `numpy.random.default_rng(seed)` (or the Generator
    passed as `seed`): the same input and seed give the same bytes.
    """
    cfg = _variant_config(variant)
    scale = _check_scale(scale)
    if isinstance(seed, np.random.Generator):
        rng, seed_value = seed, None
    else:
        try:
            rng, seed_value = np.random.default_rng(seed), int(seed)
        except (TypeError, ValueError) as err:
            raise DegradationError(f"seed must be a non-negative int or a numpy Generator, got {seed!r}") from err
    ops: list[Record] = []
    hr = _crop_to_multiple(_as_rgb(image, ops), scale, ops)
    x = hr.astype(np.float32) / np.float32(255.0)
    lr_size = (hr.shape[0] // scale, hr.shape[1] // scale)
    if cfg.kind == "bicubic":
        x = resize_bicubic_aa(x, lr_size)
        ops.append({"op": "resize", "interp": "bicubic_aa", "size": list(lr_size)})
    else:
        x = _bsr(x, rng, cfg, scale, ops)
    lr = to_uint8(x)
    record = {
        "variant": variant,
        "scale": scale,
        "seed": seed_value,
        "hr_size": list(hr.shape[:2]),
        "lr_size": list(lr.shape[:2]),
        "ops": ops,
    }
    return lr, record
