"""Latent statistics for the scale factor (Appendix F, C.1): streaming moments and the scale rule.

Legend: z a latent batch [N x C x h x w]; sigma_hat the std over all latent
entries; the LDM trains on z * scale_factor with scale_factor = 1 / sigma_hat,
so the rescaled latent has unit std. The reference estimates sigma_hat from the
first batch on rank 0 at every launch; here it is also measured over the whole
cache, with Chan et al.'s parallel update in float64 (exact to rounding for any
batch split).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from einops import rearrange

from ldm.errors import InvalidInput
from ldm.latents.config import ScaleRule


@dataclass
class RunningMoments:
    """Streaming count, mean and M2 per channel of latents, plus a count of non-finite entries."""

    channels: int
    count: int = 0  # entries per channel (N * h * w summed over batches)
    mean: torch.Tensor = field(init=False)  # [C] float64
    m2: torch.Tensor = field(init=False)  # [C] float64, sum of squared deviations
    non_finite: int = 0

    def __post_init__(self) -> None:
        self.mean = torch.zeros(self.channels, dtype=torch.float64)
        self.m2 = torch.zeros(self.channels, dtype=torch.float64)

    def update(self, z: torch.Tensor) -> None:
        """Fold a batch z [N x C x h x w] in; non-finite entries are counted, not folded."""
        if z.shape[1] != self.channels:
            raise ValueError(f"latents have {z.shape[1]} channels, the running moments {self.channels}")
        values = rearrange(z.detach().to(torch.float64), "n c h w -> c (n h w)")  # (C, N*h*w)
        finite = torch.isfinite(values)
        if not bool(finite.all()):
            self.non_finite += int((~finite).sum())
            values = values[:, finite.all(dim=0)]
        n_b = values.shape[1]
        if n_b == 0:
            return
        mean_b = values.mean(dim=1)
        m2_b = ((values - mean_b[:, None]) ** 2).sum(dim=1)
        total = self.count + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / total)
        self.m2 = self.m2 + m2_b + delta**2 * (self.count * n_b / total)
        self.count = total

    @property
    def var(self) -> torch.Tensor:
        """Population variance per channel [C]."""
        return self.m2 / max(self.count, 1)

    @property
    def overall_mean(self) -> float:
        """Mean over every entry of every channel."""
        return float(self.mean.mean())

    @property
    def overall_std(self) -> float:
        """Std over every entry of every channel (the law of total variance over channels)."""
        within = float(self.var.mean())
        between = float(((self.mean - self.mean.mean()) ** 2).mean())
        return math.sqrt(within + between)


def first_batch_std(z: torch.Tensor) -> float:
    """The reference's sigma_hat: std of every entry of one batch z [N x C x h x w]."""
    return float(z.detach().to(torch.float64).flatten().std(unbiased=False))


def choose_scale_factor(rule: ScaleRule, *, kind: str, dataset_std: float, first_std: float,
                        fixed: float = 1.0) -> float:
    """The scale factor by rule: `auto` is 1/dataset std for KL and 1.0 for VQ (App. F: VQ variance ~1)."""
    if rule == "auto":
        rule = "dataset" if kind == "kl" else "none"
    if rule == "none":
        return 1.0
    if rule == "fixed":
        return float(fixed)
    std = dataset_std if rule == "dataset" else first_std
    if not (std > 0 and math.isfinite(std)):
        raise InvalidInput(f"cannot take scale_factor = 1/std from a {rule} std of {std}; the latents are degenerate")
    return 1.0 / std
