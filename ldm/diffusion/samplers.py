"""Samplers of the reverse process: DDPM, DDIM, PLMS and DPM-Solver++(2M), one shared signature.

Legend (as in schedule.py):
    t          integer timestep in 0..T-1 handed to the denoiser
    a, a_prev  alpha_bar at the current and the next (less noisy) visited step; after the last step
               a_prev = 1 (final_alpha "one") or alpha_bar[0] (final_alpha "t0")
    x0         the clean latent implied by eps: (x_t - sqrt(1 - a) eps) / sqrt(a)   (Eq. 14)
    eps        the denoiser's noise estimate eps_theta(x_t, t)

Every sampler is `sample_x(denoise, x_T, schedule, *, steps, spacing, generator, callback)`
(DDIM adds `eta`; DDIM, PLMS and DPM-Solver++(2M) add `final_alpha`):
`denoise(x_t [N x C x H x W], t [N] long) -> eps [N x C x H x W]` is a closure that
already applies conditioning and guidance (ldm.conditioning.guided_denoiser) and
turns x0- or v-models into eps (ldm.diffusion.eps_denoiser). Samplers take the
device, dtype and spatial size from x_T: convolutional sampling (Sec. C.1) is
sampling at a larger or non-square x_T. `callback(i, total, x)` runs after step i
(0-based) of `total`. Noise comes only from `generator` (see noise.py for the
batch-independence contract); deterministic samplers accept and ignore it.

Where DDIM, PLMS and DPM-Solver++(2M) end is `final_alpha`. The default "one" takes
the last step to alpha_bar = 1, so the output is the x0 estimate. "t0" ends at
alpha_bar[t_0] = alpha_bar[0] (the schedule's first entry, the paper's t = 1) as
the reference's DDIM and PLMS do (`alphas_prev = [alphas_cumprod[0]] + ...`; x keeps
sqrt(1 - alpha_bar[0]) of eps), which diffusers calls `set_alpha_to_one=False`
(DDIMScheduler) and `final_sigmas_type="sigma_min"` (DPMSolverMultistepScheduler);
use it to compare samples with the reference's for the same noise. DDPM always ends
with the posterior mean at t = 0 and takes "one" only.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import get_args

import torch
from torch import Tensor

from ldm.diffusion.config import FinalAlpha, SamplerName, Spacing
from ldm.diffusion.losses import Denoiser
from ldm.diffusion.noise import Generators, randn_like
from ldm.diffusion.schedule import NoiseSchedule, q_posterior, x0_from_eps

Callback = Callable[[int, int, Tensor], None]

log = logging.getLogger(__name__)

# Adams-Bashforth coefficients by order, newest eps first (the linear multistep part of PNDM, Liu et al. 2022)
ADAMS_BASHFORTH = {
    1: (1.0,),
    2: (3 / 2, -1 / 2),
    3: (23 / 12, -16 / 12, 5 / 12),
    4: (55 / 24, -59 / 24, 37 / 24, -9 / 24),
}


# ---------------------------------------------------------------------------
# Which timesteps to visit
# ---------------------------------------------------------------------------

def sampling_timesteps(num_timesteps: int, steps: int | None, spacing: Spacing = "uniform") -> list[int]:
    """Ascending timesteps to visit: all T for steps=None, else the reference's DDIM spacing.

    "uniform" is the reference's `range(0, T, T // S)` shifted by +1, so it visits
    ceil(T / (T // S)) steps, which can exceed S when S does not divide T. For
    S > T / 2 the shift would index past the schedule; all T steps are used then.
    "quad" is `int(linspace(0, sqrt(0.8 T), S) ** 2) + 1`; the repeats the
    reference keeps for S > ~sqrt(0.8 T) are dropped here (a repeat is a no-op step).
    """
    T = num_timesteps
    if steps is None:
        return list(range(T))
    if not isinstance(steps, int) or not 1 <= steps <= T:
        raise ValueError(f"sampler steps must be an integer in 1..{T}, got {steps!r}")
    if spacing == "uniform":
        stride = T // steps
        # The shift puts the last step at T when stride divides T - 1 (e.g. S = 3 of T = 1000), past
        # the schedule (an index error in the reference); that step is dropped.
        ts = list(range(T)) if stride == 1 else [t + 1 for t in range(0, T, stride) if t + 1 < T]
    elif spacing == "quad":
        quad = torch.linspace(0, math.sqrt(T * 0.8), steps, dtype=torch.float64) ** 2
        ts = sorted({int(q) + 1 for q in quad.tolist()})
    else:
        raise ValueError(f"sampler spacing must be one of {get_args(Spacing)}, got {spacing!r}")
    if len(ts) != steps:
        log.info("%s spacing of %d steps over T=%d visits %d timesteps", spacing, steps, T, len(ts))
    return ts


def _plan(schedule: NoiseSchedule, ts: list[int], final_alpha: FinalAlpha = "one") -> list[tuple[int, float, float]]:
    """(t, a, a_prev) per step in sampling order, noisiest first.

    a_prev of the last step is 1 for final_alpha "one", alpha_bar[0] for "t0" (the reference's alphas_prev).
    """
    if final_alpha not in get_args(FinalAlpha):
        raise ValueError(f"final_alpha must be one of {get_args(FinalAlpha)}, got {final_alpha!r}")
    ab = schedule.alpha_bar.tolist()
    ab_prev = [1.0 if final_alpha == "one" else ab[0]] + [ab[t] for t in ts[:-1]]
    return [(t, ab[t], a_prev) for t, a_prev in zip(reversed(ts), reversed(ab_prev))]


def _timestep(x: Tensor, t: int) -> Tensor:
    """The same integer timestep for every sample: [N] long on x's device."""
    return torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)


def _x0(x: Tensor, eps: Tensor, a: float) -> Tensor:
    """x0 = (x_t - sqrt(1 - a) eps) / sqrt(a) (Eq. 14 solved for x0)."""
    return (x - math.sqrt(1 - a) * eps) / math.sqrt(a)


def _ddim_step(x: Tensor, eps: Tensor, a: float, a_prev: float, sigma: float = 0.0,
               noise: Tensor | None = None) -> Tensor:
    """x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev - sigma^2) eps + sigma noise (DDIM, Song et al. Eq. 12)."""
    x_prev = math.sqrt(a_prev) * _x0(x, eps, a) + math.sqrt(max(1 - a_prev - sigma**2, 0.0)) * eps
    return x_prev if noise is None else x_prev + sigma * noise


# ---------------------------------------------------------------------------
# Samplers
# ---------------------------------------------------------------------------

@torch.no_grad()
def sample_ddpm(denoise: Denoiser, x_T: Tensor, schedule: NoiseSchedule, *, steps: int | None = None,
                spacing: Spacing = "uniform", generator: Generators | None = None,
                callback: Callback | None = None) -> Tensor:
    """Ancestral DDPM (Ho et al. 2020, Alg. 2): x_{t-1} ~ q(x_{t-1} | x_t, x0_hat) (Eq. 10-12); [N x C x H x W].

    steps=None visits all T steps; fewer steps respace the chain: the posterior is
    taken between consecutive visited steps (betas 1 - a / a_prev, Nichol & Dhariwal).
    """
    ts = sampling_timesteps(schedule.num_steps, steps, spacing)
    visited = schedule.alpha_bar[ts]
    prev = torch.cat([torch.ones(1, dtype=visited.dtype), visited[:-1]])
    chain = NoiseSchedule(betas=1 - visited / prev, alpha_bar=visited)  # the respaced chain, index k <-> ts[k]
    x = x_T
    for i, k in enumerate(reversed(range(len(ts)))):
        t = _timestep(x, ts[k])
        x0 = x0_from_eps(schedule, x, t, denoise(x, t))
        mean, var = q_posterior(chain, x0, x, _timestep(x, k))  # Eq. 11-12
        x = mean if k == 0 else mean + var.sqrt().to(x.dtype) * randn_like(x, generator, "sample_ddpm")
        if callback is not None:
            callback(i, len(ts), x)
    return x


@torch.no_grad()
def sample_ddim(denoise: Denoiser, x_T: Tensor, schedule: NoiseSchedule, *, steps: int, eta: float = 0.0,
                spacing: Spacing = "uniform", final_alpha: FinalAlpha = "one", generator: Generators | None = None,
                callback: Callback | None = None) -> Tensor:
    """DDIM (Song et al. 2021, Eq. 12 and 16): eta = 0 is the deterministic ODE, eta = 1 DDPM-like; [N x C x H x W].

    sigma_t = eta sqrt((1 - a_prev) / (1 - a) (1 - a / a_prev)); the last step goes to
    alpha_bar = 1 (final_alpha "one") or alpha_bar[0] ("t0", the reference).
    """
    if eta < 0:
        raise ValueError(f"DDIM eta must be >= 0, got {eta}")
    plan = _plan(schedule, sampling_timesteps(schedule.num_steps, steps, spacing), final_alpha)
    x = x_T
    for i, (t, a, a_prev) in enumerate(plan):
        eps = denoise(x, _timestep(x, t))
        sigma = eta * math.sqrt((1 - a_prev) / (1 - a) * (1 - a / a_prev))
        noise = randn_like(x, generator, "sample_ddim with eta > 0") if sigma > 0 else None
        x = _ddim_step(x, eps, a, a_prev, sigma, noise)
        if callback is not None:
            callback(i, len(plan), x)
    return x


@torch.no_grad()
def sample_plms(denoise: Denoiser, x_T: Tensor, schedule: NoiseSchedule, *, steps: int,
                spacing: Spacing = "uniform", final_alpha: FinalAlpha = "one", generator: Generators | None = None,
                callback: Callback | None = None) -> Tensor:
    """PLMS (PNDM, Liu et al. 2022): 4th-order Adams-Bashforth on eps with DDIM (eta = 0) transfers.

    Warm-up as in the reference: the first step is a pseudo improved Euler (Heun)
    step, costing one extra evaluation; then orders 2, 3 and 4 as history allows.
    The last step goes to alpha_bar = 1 (final_alpha "one") or alpha_bar[0] ("t0", the reference).
    """
    plan = _plan(schedule, sampling_timesteps(schedule.num_steps, steps, spacing), final_alpha)
    x, history = x_T, []  # history: past eps, newest first
    for i, (t, a, a_prev) in enumerate(plan):
        eps = denoise(x, _timestep(x, t))
        if not history and i + 1 < len(plan):
            x_euler = _ddim_step(x, eps, a, a_prev)
            eps_prime = (eps + denoise(x_euler, _timestep(x, plan[i + 1][0]))) / 2
        else:
            terms = [eps, *history]
            eps_prime = sum(c * e for c, e in zip(ADAMS_BASHFORTH[len(terms)], terms))
        x = _ddim_step(x, eps_prime, a, a_prev)
        history = [eps, *history][:3]
        if callback is not None:
            callback(i, len(plan), x)
    return x


@torch.no_grad()
def sample_dpmpp_2m(denoise: Denoiser, x_T: Tensor, schedule: NoiseSchedule, *, steps: int,
                    spacing: Spacing = "uniform", final_alpha: FinalAlpha = "one", generator: Generators | None = None,
                    callback: Callback | None = None) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Alg. 2): multistep 2nd-order solver on x0 in lambda = log(alpha / sigma).

    First step first order. With final_alpha "one" the last step (to sigma = 0) returns
    the x0 estimate (diffusers' final_sigmas_type="zero"); with "t0" it is a regular
    solver step to alpha_bar[0] (final_sigmas_type="sigma_min").
    """
    plan = _plan(schedule, sampling_timesteps(schedule.num_steps, steps, spacing), final_alpha)
    x, x0_old, h_old = x_T, None, None
    for i, (t, a, a_prev) in enumerate(plan):
        x0 = _x0(x, denoise(x, _timestep(x, t)), a)
        if a_prev >= 1.0:
            x = x0
        elif a_prev > a:  # a_prev == a (final_alpha "t0" after visiting t = 0) is a no-op step
            h = 0.5 * (math.log(a_prev / (1 - a_prev)) - math.log(a / (1 - a)))  # lambda_next - lambda
            d = x0
            if x0_old is not None:
                r = h_old / h
                d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * x0_old
            # x_next = (sigma_next / sigma) x - alpha_next (e^{-h} - 1) D
            x = math.sqrt((1 - a_prev) / (1 - a)) * x - math.sqrt(a_prev) * math.expm1(-h) * d
            x0_old, h_old = x0, h
        if callback is not None:
            callback(i, len(plan), x)
    return x


SAMPLERS: dict[str, Callable[..., Tensor]] = {
    "ddpm": sample_ddpm,
    "ddim": sample_ddim,
    "plms": sample_plms,
    "dpmpp_2m": sample_dpmpp_2m,
}


def sample(name: SamplerName, denoise: Denoiser, x_T: Tensor, schedule: NoiseSchedule, *,
           steps: int | None, eta: float = 0.0, spacing: Spacing = "uniform", final_alpha: FinalAlpha = "one",
           generator: Generators | None = None, callback: Callback | None = None) -> Tensor:
    """Run the sampler `name` from x_T [N x C x H x W].

    eta is a DDIM option (0 elsewhere); final_alpha applies to ddim, plms and dpmpp_2m ("one" for ddpm).
    """
    if name not in SAMPLERS:
        raise ValueError(f"sampler must be one of {get_args(SamplerName)}, got {name!r}")
    if final_alpha not in get_args(FinalAlpha):
        raise ValueError(f"final_alpha must be one of {get_args(FinalAlpha)}, got {final_alpha!r}")
    options = dict(spacing=spacing, generator=generator, callback=callback)
    if name == "ddim":
        options["eta"] = eta
    elif eta != 0.0:
        raise ValueError(f"eta is a DDIM option; sampler {name!r} needs eta 0, got {eta}")
    if name in ("ddim", "plms", "dpmpp_2m"):
        options["final_alpha"] = final_alpha
    elif final_alpha != "one":
        raise ValueError(f"final_alpha {final_alpha!r} applies to ddim, plms and dpmpp_2m; sampler {name!r}"
                         " ends with the posterior mean at t=0 and needs final_alpha 'one'")
    if steps is None and name != "ddpm":
        raise ValueError(f"sampler {name!r} needs a number of steps (only ddpm runs all T steps by default)")
    return SAMPLERS[name](denoise, x_T, schedule, steps=steps, **options)
