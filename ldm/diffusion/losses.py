"""The LDM training objective L_simple (Eq. 1, 13-15) with optional min-SNR-gamma weighting.

Legend: x0 clean latent, eps noise, xt noised latent, t timestep in 0..T-1,
alpha_bar cumulative signal fraction, snr = alpha_bar / (1 - alpha_bar).
"""

from __future__ import annotations

from typing import Callable, get_args

import torch
from torch import Tensor

from ldm.diffusion.config import DiffusionConfig, LossType
from ldm.diffusion.schedule import NoiseSchedule, Parameterization, q_sample, v_from_x0_eps

Denoiser = Callable[[Tensor, Tensor], Tensor]  # (xt [N x C x H x W], t [N]) -> model output


def training_target(schedule: NoiseSchedule, x0: Tensor, t: Tensor, eps: Tensor,
                    parameterization: Parameterization) -> Tensor:
    """What the network regresses: eps (Eq. 1), x0 (Eq. 13) or v; [N x C x H x W]."""
    if parameterization == "eps":
        return eps
    if parameterization == "x0":
        return x0
    if parameterization == "v":
        return v_from_x0_eps(schedule, x0, t, eps)
    raise ValueError(f"parameterization must be one of {get_args(Parameterization)}, got {parameterization!r}")


def per_sample_loss(pred: Tensor, target: Tensor, loss_type: LossType) -> Tensor:
    """Mean squared (L2) or absolute (L1) error per sample: [N x ...] -> [N]."""
    if loss_type == "l2":
        err = (pred.float() - target.float()) ** 2
    elif loss_type == "l1":
        err = (pred.float() - target.float()).abs()
    else:
        raise ValueError(f"loss_type must be one of {get_args(LossType)}, got {loss_type!r}")
    return err.flatten(1).mean(dim=1)  # (N,)


def min_snr_weight(schedule: NoiseSchedule, t: Tensor, gamma: float,
                   parameterization: Parameterization) -> Tensor:
    """Min-SNR-gamma weights (Hang et al. 2023), expressed for the regressed quantity; [N].

    The x0-space weight min(snr, gamma) becomes min(snr, gamma) / snr for eps
    prediction (Eq. 15: ||x0 - x0_hat||^2 = ||eps - eps_hat||^2 / snr) and
    min(snr, gamma) / (snr + 1) for v prediction.
    """
    snr = schedule.snr[t.to("cpu", torch.long)]  # (N,) float64
    clipped = snr.clamp(max=gamma)
    if parameterization == "eps":
        weight = clipped / snr
    elif parameterization == "x0":
        weight = clipped
    elif parameterization == "v":
        weight = clipped / (snr + 1)
    else:
        raise ValueError(f"parameterization must be one of {get_args(Parameterization)}, got {parameterization!r}")
    return weight.to(torch.float32).to(t.device)


def diffusion_loss(denoise: Denoiser, x0: Tensor, t: Tensor, eps: Tensor,
                   schedule: NoiseSchedule, config: DiffusionConfig) -> Tensor:
    """L_simple: E ||target - f(xt, t)|| over a batch (Eq. 1), min-SNR weighted if configured; scalar."""
    xt = q_sample(schedule, x0, t, eps)  # Eq. 4
    pred = denoise(xt, t)
    target = training_target(schedule, x0, t, eps, config.parameterization)
    loss = per_sample_loss(pred, target, config.loss_type)  # (N,)
    if config.min_snr_gamma is not None:
        loss = loss * min_snr_weight(schedule, t, config.min_snr_gamma, config.parameterization)
    return loss.mean()
