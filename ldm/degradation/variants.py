"""Parameters of the degradation variants: original BSR, the paper's moderated BSR, bicubic.

Legend
    sf        scale factor still to go (4, or 2 after the 1/2 pre-downsample)
    level     Gaussian noise standard deviation in 8-bit grey levels (/255)
    quality   JPEG quality factor, inclusive range
    p_*       probability of a branch

Values follow Zhang et al.'s utils_blindsr.degradation_bsrgan ("bsr") and the
LDM code's bsrgan_light.degradation_bsrgan_variant ("bsr_light"), Sec. C.7.1
and the table in REFERENCE.md (given there for sf = 4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

VariantName = Literal["bsr", "bsr_light", "bicubic"]
Scale = Literal[2, 3, 4, 8]  # SR factors: HR side / LR side


@dataclass(frozen=True)
class BlurConfig:
    """Random Gaussian blur: kernel sizes to draw from and sigma / eigenvalue maxima."""

    passes: int  # blur operations in the shuffled list (2 original, 1 moderated)
    p_aniso: float  # probability of the anisotropic kernel
    iso_ksizes: tuple[int, ...]
    aniso_ksizes: tuple[int, ...]
    strength: float  # multiplies both maxima below: 1 original, 1/4 moderated

    def iso_sigma_max(self, sf: int) -> float:
        """Largest isotropic sigma at scale sf (2.8 / 0.7 for sf = 4, Tab. in C.7.1)."""
        return self.strength * (2.0 + 0.2 * sf)

    def aniso_eig_max(self, sf: int) -> float:
        """Largest anisotropic eigenvalue at scale sf (8 / 2 for sf = 4)."""
        return self.strength * (4.0 + sf)


@dataclass(frozen=True)
class DownsampleConfig:
    """The shuffled downsampling: random resize or shifted Gaussian + nearest."""

    p_resize: float  # else shifted Gaussian blur then keep every sf-th pixel
    shifted_ksize: int
    shifted_sigma_min: float
    shifted_sigma_per_sf: float  # sigma ~ U(min, per_sf * sf)


@dataclass(frozen=True)
class NoiseConfig:
    """Additive Gaussian noise: level range and the colour / grey / correlated split."""

    level_min: int
    level_max: int  # also the scale of the channel-correlated covariance
    p_color: float
    p_grey: float  # the rest is channel-correlated


@dataclass(frozen=True)
class JpegConfig:
    """JPEG re-compression: quality range, and the chance of the in-order (not final) one."""

    quality_min: int
    quality_max: int
    p_in_order: float


@dataclass(frozen=True)
class VariantConfig:
    """One degradation variant; `kind` selects the bicubic shortcut or the BSR pipeline."""

    kind: Literal["bsr", "bicubic"]
    blur: BlurConfig | None = None
    downsample: DownsampleConfig | None = None
    noise: NoiseConfig | None = None
    jpeg: JpegConfig | None = None
    p_predownsample: float = 0.0  # the 1/2 pre-downsample, only when scale == 4
    predownsample_scales: tuple[int, ...] = (4,)


_ORIGINAL_KSIZES = tuple(range(7, 26, 2))  # 2 * randint(2, 11) + 3

VARIANT_CONFIGS: dict[VariantName, VariantConfig] = {
    "bsr": VariantConfig(
        kind="bsr",
        blur=BlurConfig(
            passes=2,
            p_aniso=0.5,
            iso_ksizes=_ORIGINAL_KSIZES,
            aniso_ksizes=_ORIGINAL_KSIZES,
            strength=1.0,
        ),
        downsample=DownsampleConfig(
            p_resize=0.75, shifted_ksize=25, shifted_sigma_min=0.1, shifted_sigma_per_sf=0.6
        ),
        noise=NoiseConfig(level_min=2, level_max=25, p_color=0.4, p_grey=0.4),
        jpeg=JpegConfig(quality_min=30, quality_max=95, p_in_order=0.9),
        p_predownsample=0.25,
    ),
    "bsr_light": VariantConfig(
        kind="bsr",
        blur=BlurConfig(
            passes=1,
            p_aniso=0.5,
            iso_ksizes=(5, 6, 7),  # randint(2, 4) + 3: even sizes included, as in the LDM code
            aniso_ksizes=tuple(range(5, 15)),  # randint(2, 11) + 3
            strength=0.25,
        ),
        downsample=DownsampleConfig(
            p_resize=0.8, shifted_ksize=25, shifted_sigma_min=0.1, shifted_sigma_per_sf=0.6
        ),
        # degradation_bsrgan_variant uses 1-2; the file's degradation_bsrgan uses 2-8.
        noise=NoiseConfig(level_min=1, level_max=2, p_color=0.4, p_grey=0.4),
        jpeg=JpegConfig(quality_min=80, quality_max=95, p_in_order=0.9),
        p_predownsample=0.25,
    ),
    "bicubic": VariantConfig(kind="bicubic"),
}

VARIANTS: tuple[VariantName, ...] = tuple(VARIANT_CONFIGS)
