"""Classifier-free guidance (Ho & Salimans): condition dropout in training, e_u + s (e_c - e_u) in sampling.

The reference never dropped conditions; here a null class / empty prompt
replaces the condition with probability p_uncond, drawn from a passed generator.
At sampling time `guided_denoiser` builds the `denoise(x_t, t)` closure the
samplers in ldm.diffusion take.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from einops import rearrange, repeat
from torch import Tensor

from ldm.diffusion.noise import Generators, uniform

Condition = Tensor | dict[str, Tensor]
EpsModel = Callable[[Tensor, Tensor, Condition], Tensor]  # (x_t [N x C x H x W], t [N], cond) -> eps


def uncond_mask(n: int, p_uncond: float, generator: Generators) -> Tensor:
    """[N] bool, True where the condition is dropped; one generator for the batch or one per sample."""
    if not 0.0 <= p_uncond <= 1.0:
        raise ValueError(f"p_uncond must be in [0, 1], got {p_uncond}")
    return uniform(n, generator) < p_uncond


def drop_class_labels(labels: Tensor, p_uncond: float, null_class: int, generator: Generators) -> Tensor:
    """labels [N] long with each entry replaced by null_class with probability p_uncond."""
    drop = uncond_mask(labels.shape[0], p_uncond, generator).to(labels.device)
    return torch.where(drop, torch.full_like(labels, null_class), labels)


def drop_prompts(prompts: list[str], p_uncond: float, generator: Generators) -> list[str]:
    """prompts with each replaced by the empty prompt "" with probability p_uncond."""
    drop = uncond_mask(len(prompts), p_uncond, generator).tolist()
    return ["" if d else prompt for prompt, d in zip(prompts, drop)]


def guided_denoiser(eps_model: EpsModel, cond: Condition, null_cond: Condition,
                    scale: float) -> Callable[[Tensor, Tensor], Tensor]:
    """denoise(x_t, t) = e_u + s (e_c - e_u) [N x C x H x W] from one batched call; s = 1 is e_c alone.

    cond and null_cond are [N x ...] tensors (labels, tokens) or dicts of them
    (concat conditioning); the unconditional half runs on null_cond.
    """
    if scale == 1.0:
        return lambda xt, t: eps_model(xt, t, cond)
    both = _concat(null_cond, cond)

    def denoise(xt: Tensor, t: Tensor) -> Tensor:
        out = eps_model(repeat(xt, "n ... -> (two n) ...", two=2), repeat(t, "n -> (two n)", two=2), both)
        e_u, e_c = rearrange(out, "(two n) ... -> two n ...", two=2)  # (N, C, H, W) each
        return e_u + scale * (e_c - e_u)

    return denoise


def _concat(first: Condition, second: Condition) -> Condition:
    """[first; second] along the batch, key by key for dict conditions."""
    if isinstance(first, dict) and isinstance(second, dict):
        if set(first) != set(second):
            raise ValueError(f"cond and null_cond need the same keys, got {sorted(second)} and {sorted(first)}")
        return {key: torch.cat([first[key], second[key]]) for key in second}
    if isinstance(first, Tensor) and isinstance(second, Tensor):
        if first.shape != second.shape:
            raise ValueError(f"cond {tuple(second.shape)} and null_cond {tuple(first.shape)} must have one shape")
        return torch.cat([first, second])
    raise ValueError("cond and null_cond must both be tensors or both dicts of tensors")
