"""Condition dropout for classifier-free guidance (Ho & Salimans): train one model for p(z|y) and p(z).

The reference never dropped conditions; here a null class / empty prompt
replaces the condition with probability p_uncond, drawn from a passed generator.
"""

from __future__ import annotations

import torch
from torch import Tensor


def uncond_mask(n: int, p_uncond: float, generator: torch.Generator) -> Tensor:
    """[N] bool, True where the condition is dropped; drawn on the generator's device."""
    if not 0.0 <= p_uncond <= 1.0:
        raise ValueError(f"p_uncond must be in [0, 1], got {p_uncond}")
    return torch.rand(n, generator=generator, device=generator.device) < p_uncond


def drop_class_labels(labels: Tensor, p_uncond: float, null_class: int, generator: torch.Generator) -> Tensor:
    """labels [N] long with each entry replaced by null_class with probability p_uncond."""
    drop = uncond_mask(labels.shape[0], p_uncond, generator).to(labels.device)
    return torch.where(drop, torch.full_like(labels, null_class), labels)


def drop_prompts(prompts: list[str], p_uncond: float, generator: torch.Generator) -> list[str]:
    """prompts with each replaced by the empty prompt "" with probability p_uncond."""
    drop = uncond_mask(len(prompts), p_uncond, generator).tolist()
    return ["" if d else prompt for prompt, d in zip(prompts, drop)]
