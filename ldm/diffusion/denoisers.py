"""Denoiser closures for the samplers: parameterization adapter and image guiding (Appendix B).

Legend: z_t noised latent [N x C x h x w], t [N] long, eps noise estimate,
z0 the clean latent implied by eps (Eq. 14), a = alpha_bar_t, y a target image,
D the first-stage decoder, T a differentiable transform (identity, downsampling).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ldm.diffusion.losses import Denoiser
from ldm.diffusion.schedule import NoiseSchedule, Parameterization, gather, predict_eps, x0_from_eps


def eps_denoiser(model: Denoiser, schedule: NoiseSchedule, parameterization: Parameterization) -> Denoiser:
    """Wrap model(x_t, t) -> eps, x0 or v output as denoise(x_t, t) -> eps [N x C x H x W] (Eq. 14)."""
    if parameterization == "eps":
        return model

    def denoise(xt: Tensor, t: Tensor) -> Tensor:
        return predict_eps(schedule, xt, t, model(xt, t), parameterization)

    return denoise


def image_guided_denoiser(denoise: Denoiser, decode: Callable[[Tensor], Tensor], target: Tensor,
                          schedule: NoiseSchedule, weight: float, *,
                          transform: Callable[[Tensor], Tensor] | None = None) -> Denoiser:
    """Image guiding (Appendix B, Eq. 16-17): eps_hat = eps - sqrt(1 - a) grad_{z_t} log p(y | z_t).

    log p(y | z_t) = -weight / 2 ||y - T(D(z0(z_t)))||^2 per sample (Eq. 17 with
    sigma^2 = 1 / weight), target y [N x 3 x H x W] as T(D(z0)) produces it.

    Sign: eps_theta estimates -sqrt(1 - a) grad log p(z_t), so the conditional
    score grad log p(z_t) + grad log p(y | z_t) gives eps - sqrt(1 - a) grad log
    p(y | z_t), as in Dhariwal & Nichol (Alg. 2). Eq. 16 of the paper prints "+",
    which with this log p would push samples away from y.

    The gradient flows through eps_theta inside z0(z_t), as the formula says: one
    backward pass through the UNet per step. (Holding eps fixed instead scales
    the step by 1 / a, which explodes at high noise.)
    """
    transform = transform if transform is not None else (lambda x: x)

    def guided(zt: Tensor, t: Tensor) -> Tensor:
        with torch.enable_grad():
            z = zt.detach().requires_grad_(True)
            eps = denoise(z, t)
            z0 = x0_from_eps(schedule, z, t, eps)  # Eq. 14
            log_p = -0.5 * weight * (target - transform(decode(z0))).pow(2).sum()  # Eq. 17, summed over the batch
            (grad,) = torch.autograd.grad(log_p, z)  # samples are independent: row i is grad of sample i
        scale = (1 - gather(schedule.alpha_bar, t, zt)).sqrt()  # (N, 1, 1, 1)
        return (eps.detach() - scale * grad).to(zt.dtype)  # Eq. 16, sign as derived above

    return guided

