"""What configures diffusion, with no torch import: the schedule and objective (Appendix A) and the sampler (D.3).

The names of schedules, parameterizations, losses, samplers and spacings are
written here once; the modules that implement them import these `Literal`s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from ldm.config import Config, check_literals

if TYPE_CHECKING:
    from ldm.diffusion.schedule import NoiseSchedule

ScheduleKind = Literal["linear", "cosine", "sqrt_linear"]
Parameterization = Literal["eps", "x0", "v"]
LossType = Literal["l2", "l1"]
SamplerName = Literal["ddpm", "ddim", "plms", "dpmpp_2m"]
Spacing = Literal["uniform", "quad"]
FinalAlpha = Literal["one", "t0"]


@dataclass(frozen=True)
class DiffusionConfig(Config):
    """Schedule and objective of a latent diffusion model (Appendix A, Tab. 12-15)."""

    section = "diffusion"

    schedule: ScheduleKind = "linear"
    timesteps: int = 1000  # T
    linear_start: float = 0.0015  # beta_1 (per task: REFERENCE.md "Diffusion")
    linear_end: float = 0.0195  # beta_T
    parameterization: Parameterization = "eps"
    loss_type: LossType = "l2"  # L_simple with L2 (Eq. 1) or L1 (churches, inpainting, semantic)
    min_snr_gamma: float | None = None  # Hang et al. min-SNR-gamma weighting; None: off (Eq. 1 as is)

    def __post_init__(self) -> None:
        check_literals(self, "diffusion")
        if not isinstance(self.timesteps, int) or self.timesteps < 2:
            raise ValueError(f"diffusion.timesteps must be an integer >= 2, got {self.timesteps!r}")
        if not 0.0 < self.linear_start < self.linear_end < 1.0:
            raise ValueError(
                "diffusion: need 0 < linear_start < linear_end < 1,"
                f" got linear_start={self.linear_start}, linear_end={self.linear_end}"
            )
        if self.min_snr_gamma is not None and not self.min_snr_gamma > 0:
            raise ValueError(f"diffusion.min_snr_gamma must be > 0 or null, got {self.min_snr_gamma}")

    def make_schedule(self) -> NoiseSchedule:
        """The NoiseSchedule this config describes."""
        from ldm.diffusion.schedule import make_schedule

        return make_schedule(self.schedule, self.timesteps, self.linear_start, self.linear_end)


@dataclass(frozen=True)
class SamplerSettings(Config):
    """Everything about sampling that changes a number (D.3); stored with every metric it makes."""

    section = "sampling"

    sampler: SamplerName = "ddim"
    steps: int = 50  # denoising steps (<= the model's T, checked when sampling)
    eta: float = 0.0  # DDIM only: 0 deterministic, 1 DDPM-like
    spacing: Spacing = "uniform"  # uniform (the reference's) | quad
    # where DDIM/PLMS/DPM++(2M) end. one: the last step goes to alpha_bar = 1 and returns the x0 estimate;
    # t0: to alpha_bar[t_0] as the reference (diffusers' set_alpha_to_one=False). DDPM: one only
    final_alpha: FinalAlpha = "one"
    guidance_scale: float = 1.0  # classifier-free guidance s (e_u + s (e_c - e_u)); 1: the conditional model

    def __post_init__(self) -> None:
        check_literals(self, "sampling")
        if self.steps < 1:
            raise ValueError(f"sampling: steps must be >= 1, got {self.steps}")
        if not 0.0 <= self.guidance_scale:
            raise ValueError(f"sampling: guidance scale must be >= 0, got {self.guidance_scale}")
        if not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"sampling: eta must be in 0..1, got {self.eta}")
        if self.sampler == "ddpm" and self.final_alpha != "one":
            raise ValueError("sampling: final_alpha 't0' applies to ddim, plms and dpmpp_2m; ddpm ends at t = 0")


@dataclass(frozen=True)
class ImageGuideSettings(Config):
    """L2 image guiding towards a low-resolution image (Appendix B, Eq. 16-17, Fig. 12); stored with the samples."""

    section = "image_guide"

    # s in log p(y | z_t) = -s/2 ||y - T(D(z0(z_t)))||^2: 1 / sigma^2 of the Gaussian guider (Eq. 17 takes 1); 0: off
    scale: float = 1.0
    # T: bicubic downsampling of the decoded sample by this factor (Fig. 12: 2x); the guide y is
    # resized to the sample size / downsample
    downsample: int = 2

    def __post_init__(self) -> None:
        if not 0.0 <= self.scale:
            raise ValueError(f"image guiding: scale must be >= 0, got {self.scale}")
        if not isinstance(self.downsample, int) or self.downsample < 1:
            raise ValueError(f"image guiding: downsample must be an integer >= 1, got {self.downsample!r}")

    def guide_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """(h, w) of the guide y for samples of (H, W) pixels."""
        return (max(1, size[0] // self.downsample), max(1, size[1] // self.downsample))
