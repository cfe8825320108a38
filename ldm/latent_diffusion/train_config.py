"""Optimisation settings of LDM training (D.1, Tab. 12-15), with no torch import."""

from __future__ import annotations

from dataclasses import dataclass

from ldm.config import Config


@dataclass(frozen=True)
class TrainConfig(Config):
    """Optimisation of an LDM: AdamW, linear warm-up, EMA, condition dropout (D.1, Tab. 12-15)."""

    section = "train"

    lr: float = 1.0e-4  # Tab. 12-15 list 5e-5 .. 1e-4 at their batch sizes
    warmup_steps: int = 0  # linear warm-up; the reference uses 10k for churches and text
    weight_decay: float = 0.01  # AdamW default, as the reference
    beta1: float = 0.9
    beta2: float = 0.999
    ema_decay: float = 0.9999  # max EMA decay; effective min(ema_decay, (1+n)/(10+n)); 0: no EMA
    p_uncond: float = 0.0  # classifier-free guidance: drop the condition with this probability
    grad_clip: float = 0.0  # for Trainer(gradient_clip_val=...); 0: off
    seed: int = 0  # timesteps, noise and condition dropout
    # Flush denormal floats to zero on the CPU while fitting. Measured here: without it,
    # steps of the tiny presets slow from 0.5 s to 11 s once AdamW moments and gradients
    # of the zero-initialised layers underflow into denormals.
    flush_denormal: bool = True

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ValueError(f"train.lr must be > 0, got {self.lr}")
        for name in ("warmup_steps", "weight_decay", "grad_clip"):
            if getattr(self, name) < 0:
                raise ValueError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("beta1", "beta2", "ema_decay"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"train.{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0.0 <= self.p_uncond < 1.0:
            raise ValueError(f"train.p_uncond must be in [0, 1), got {self.p_uncond}")
