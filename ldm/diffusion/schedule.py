"""Noise schedules and the Gaussian forward process of DDPM (Appendix A, Eq. 4-15).

Notation (as in the paper and Ho et al.):
    t          integer timestep in 0..T-1 (index 0 is the paper's t = 1)
    beta       per-step noise variance, beta_t
    alpha_bar  cumulative product prod_{s<=t} (1 - beta_s); the paper's alpha_t**2
    x0         clean latent, [N x C x H x W]
    eps        standard normal noise of the same shape
    xt         noised latent sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps   (Eq. 4)
    v          velocity sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x0 (Salimans & Ho)
    snr        alpha_bar_t / (1 - alpha_bar_t), the paper's SNR(t) = alpha_t^2 / sigma_t^2

Schedules are pure functions of the step count and return float64 *torch* tensors
on the CPU (also inside a `torch.device(...)` context). Functions that apply them to a batch gather the entries for `t` and
cast them to the batch's dtype and device, so nothing here hard-codes a device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import get_args

import torch
from einops import rearrange
from torch import Tensor

from ldm.diffusion.config import Parameterization, ScheduleKind

# ---------------------------------------------------------------------------
# Beta schedules: pure functions of the step count
# ---------------------------------------------------------------------------

def linear_betas(steps: int, start: float, end: float) -> Tensor:
    """The paper's "linear" schedule: linear in sqrt(beta) (diffusers' `scaled_linear`)."""
    return torch.linspace(math.sqrt(start), math.sqrt(end), steps, dtype=torch.float64, device="cpu") ** 2


def sqrt_linear_betas(steps: int, start: float, end: float) -> Tensor:
    """The reference's `sqrt_linear`: betas linear in beta itself (the DDPM schedule).

    The name is the reference's (CompVis `make_beta_schedule`): there "sqrt_linear"
    is the schedule whose *square root* is not linear, i.e. plain linspace.
    """
    return torch.linspace(start, end, steps, dtype=torch.float64, device="cpu")


def cosine_betas(steps: int, s: float = 8e-3, max_beta: float = 0.999) -> Tensor:
    """Nichol & Dhariwal's cosine schedule: alpha_bar(u) = cos((u + s) / (1 + s) * pi / 2)^2."""
    u = torch.arange(steps + 1, dtype=torch.float64, device="cpu") / steps
    f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=max_beta)


@dataclass(frozen=True)
class NoiseSchedule:
    """A discrete schedule: float64 CPU torch tensors `betas` and `alpha_bar`, both [T]."""

    betas: Tensor
    alpha_bar: Tensor

    @property
    def num_steps(self) -> int:
        """T, the number of diffusion steps."""
        return int(self.betas.shape[0])

    @property
    def alpha_bar_prev(self) -> Tensor:
        """alpha_bar_{t-1}, with alpha_bar_{-1} = 1 (x0 itself)."""
        return torch.cat([torch.ones(1, dtype=torch.float64, device=self.alpha_bar.device), self.alpha_bar[:-1]])

    @property
    def snr(self) -> Tensor:
        """SNR(t) = alpha_bar / (1 - alpha_bar) (Appendix A)."""
        return self.alpha_bar / (1 - self.alpha_bar)

    @property
    def posterior_variance(self) -> Tensor:
        """Variance of q(x_{t-1} | x_t, x0): beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) (Eq. 11)."""
        return self.betas * (1 - self.alpha_bar_prev) / (1 - self.alpha_bar)

    @property
    def posterior_log_variance_clipped(self) -> Tensor:
        """log of the posterior variance; entry 0 (which is 0) replaced by entry 1, as in DDPM."""
        var = self.posterior_variance
        return torch.log(torch.cat([var[1:2], var[1:]]))


def make_schedule(kind: ScheduleKind, steps: int = 1000, start: float = 0.0015,
                  end: float = 0.0195) -> NoiseSchedule:
    """Build a schedule by name; `start`/`end` are ignored by `cosine`."""
    if not isinstance(steps, int) or steps < 2:
        raise ValueError(f"diffusion.timesteps must be an integer >= 2, got {steps!r}")
    if kind == "linear":
        betas = linear_betas(steps, start, end)
    elif kind == "sqrt_linear":
        betas = sqrt_linear_betas(steps, start, end)
    elif kind == "cosine":
        betas = cosine_betas(steps)
    else:
        raise ValueError(f"diffusion.schedule must be one of {get_args(ScheduleKind)}, got {kind!r}")
    if not bool(((betas > 0) & (betas < 1)).all()):
        raise ValueError(f"diffusion: betas must lie in (0, 1); check start={start} and end={end}")
    return NoiseSchedule(betas=betas, alpha_bar=torch.cumprod(1 - betas, dim=0))


# ---------------------------------------------------------------------------
# Gathering schedule entries for a batch
# ---------------------------------------------------------------------------

def gather(values: Tensor, t: Tensor, x: Tensor) -> Tensor:
    """values[t] broadcast against x: [N] -> [N x 1 x ... x 1], in x's float dtype and device."""
    dtype = torch.promote_types(x.dtype, torch.float32)
    picked = values[t.to("cpu", torch.long)].to(dtype=dtype).to(x.device)  # (N,)
    return rearrange(picked, "n -> n" + " 1" * (x.ndim - 1))  # (N, 1, ..., 1)


# ---------------------------------------------------------------------------
# Forward process and posterior (Eq. 4, 10-12)
# ---------------------------------------------------------------------------

def q_sample(schedule: NoiseSchedule, x0: Tensor, t: Tensor, eps: Tensor) -> Tensor:
    """Sample xt ~ q(xt | x0) = N(sqrt(alpha_bar) x0, (1 - alpha_bar) I) (Eq. 4); [N x C x H x W]."""
    ab = gather(schedule.alpha_bar, t, x0)
    return (ab.sqrt() * x0 + (1 - ab).sqrt() * eps).to(x0.dtype)


def q_posterior(schedule: NoiseSchedule, x0: Tensor, xt: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and variance of q(x_{t-1} | xt, x0) (Eq. 10-12); mean [N x C x H x W], variance [N x 1 x 1 x 1]."""
    ab, ab_prev, beta = (gather(v, t, xt) for v in
                         (schedule.alpha_bar, schedule.alpha_bar_prev, schedule.betas))
    coef_x0 = beta * ab_prev.sqrt() / (1 - ab)  # Eq. 12, alpha_{t-1} sigma_{t|t-1}^2 / sigma_t^2
    coef_xt = (1 - ab_prev) * (1 - beta).sqrt() / (1 - ab)  # Eq. 12, alpha_{t|t-1} sigma_{t-1}^2 / sigma_t^2
    mean = coef_x0 * x0 + coef_xt * xt
    return mean.to(xt.dtype), gather(schedule.posterior_variance, t, xt)


# ---------------------------------------------------------------------------
# Conversions between the eps, x0 and v parameterizations (Eq. 14)
# ---------------------------------------------------------------------------

def x0_from_eps(schedule: NoiseSchedule, xt: Tensor, t: Tensor, eps: Tensor) -> Tensor:
    """x0 = (xt - sqrt(1 - alpha_bar) eps) / sqrt(alpha_bar) (Eq. 14 solved for x0)."""
    ab = gather(schedule.alpha_bar, t, xt)
    return ((xt - (1 - ab).sqrt() * eps) / ab.sqrt()).to(xt.dtype)


def eps_from_x0(schedule: NoiseSchedule, xt: Tensor, t: Tensor, x0: Tensor) -> Tensor:
    """eps = (xt - sqrt(alpha_bar) x0) / sqrt(1 - alpha_bar) (Eq. 14)."""
    ab = gather(schedule.alpha_bar, t, xt)
    return ((xt - ab.sqrt() * x0) / (1 - ab).sqrt()).to(xt.dtype)


def v_from_x0_eps(schedule: NoiseSchedule, x0: Tensor, t: Tensor, eps: Tensor) -> Tensor:
    """v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x0."""
    ab = gather(schedule.alpha_bar, t, x0)
    return (ab.sqrt() * eps - (1 - ab).sqrt() * x0).to(x0.dtype)


def x0_from_v(schedule: NoiseSchedule, xt: Tensor, t: Tensor, v: Tensor) -> Tensor:
    """x0 = sqrt(alpha_bar) xt - sqrt(1 - alpha_bar) v."""
    ab = gather(schedule.alpha_bar, t, xt)
    return (ab.sqrt() * xt - (1 - ab).sqrt() * v).to(xt.dtype)


def eps_from_v(schedule: NoiseSchedule, xt: Tensor, t: Tensor, v: Tensor) -> Tensor:
    """eps = sqrt(1 - alpha_bar) xt + sqrt(alpha_bar) v."""
    ab = gather(schedule.alpha_bar, t, xt)
    return ((1 - ab).sqrt() * xt + ab.sqrt() * v).to(xt.dtype)


def predict_x0(schedule: NoiseSchedule, xt: Tensor, t: Tensor, out: Tensor,
               parameterization: Parameterization) -> Tensor:
    """The x0 estimate implied by a model output in the given parameterization."""
    if parameterization == "eps":
        return x0_from_eps(schedule, xt, t, out)
    if parameterization == "x0":
        return out
    if parameterization == "v":
        return x0_from_v(schedule, xt, t, out)
    raise ValueError(f"parameterization must be one of {get_args(Parameterization)}, got {parameterization!r}")


def predict_eps(schedule: NoiseSchedule, xt: Tensor, t: Tensor, out: Tensor,
                parameterization: Parameterization) -> Tensor:
    """The eps estimate implied by a model output in the given parameterization."""
    if parameterization == "eps":
        return out
    if parameterization == "x0":
        return eps_from_x0(schedule, xt, t, out)
    if parameterization == "v":
        return eps_from_v(schedule, xt, t, out)
    raise ValueError(f"parameterization must be one of {get_args(Parameterization)}, got {parameterization!r}")
