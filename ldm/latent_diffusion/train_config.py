"""Optimisation settings of LDM training (D.1, Tab. 12-15), with no torch import."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from ldm.config import Config, check_literals

LRDecay = Literal["constant", "cosine"]


@dataclass(frozen=True)
class TrainConfig(Config):
    """Optimisation of an LDM: AdamW, linear warm-up, EMA, condition dropout (D.1, Tab. 12-15)."""

    section = "train"

    lr: float = 1.0e-4  # with scale_lr: per sample, multiplied by batch x devices x accumulate
    scale_lr: bool = False  # the reference's rule (`--scale_lr`): effective lr = lr x batch x devices x accumulate
    accumulate: int = 1  # batches per optimizer step (gradient accumulation); steps count optimizer steps
    warmup_steps: int = 0  # linear warm-up; the reference uses 10k for churches and text
    lr_decay: LRDecay = "constant"  # cosine: to 0 over decay_steps optimizer steps, after the warm-up
    decay_steps: int = 0  # cosine: steps to decay over; 0: all of the run's steps (see `resolved`)
    weight_decay: float = 0.01  # AdamW default, as the reference
    beta1: float = 0.9
    beta2: float = 0.999
    ema_decay: float = 0.9999  # max EMA decay; effective min(ema_decay, (1+n)/(10+n)); 0: no EMA
    p_uncond: float = 0.0  # classifier-free guidance: drop the condition with this probability
    grad_clip: float = 0.0  # for Trainer(gradient_clip_val=...); 0: off
    seed: int = 0  # timesteps, noise and condition dropout
    max_bad_steps: int = 3  # steps in a row with a NaN/inf loss that are skipped (no update); one more stops training
    # Flush denormal floats to zero on the CPU while fitting. Measured here: without it,
    # steps of the tiny presets slow from 0.5 s to 11 s once AdamW moments and gradients
    # of the zero-initialised layers underflow into denormals.
    flush_denormal: bool = True

    def __post_init__(self) -> None:
        check_literals(self, "train")
        if not self.lr > 0:
            raise ValueError(f"train.lr must be > 0, got {self.lr}")
        if self.accumulate < 1:
            raise ValueError(f"train.accumulate must be >= 1, got {self.accumulate}")
        if self.lr_decay == "constant" and self.decay_steps:
            raise ValueError(f"train.decay_steps is {self.decay_steps} but train.lr_decay is 'constant';"
                             " set lr_decay: cosine or decay_steps: 0")
        for name in ("warmup_steps", "weight_decay", "grad_clip", "decay_steps", "max_bad_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("beta1", "beta2", "ema_decay"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"train.{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0.0 <= self.p_uncond < 1.0:
            raise ValueError(f"train.p_uncond must be in [0, 1), got {self.p_uncond}")

    def resolved(self, steps: int) -> TrainConfig:
        """This config for a run of `steps` optimizer steps: a cosine decay with decay_steps 0 spans the run."""
        if self.lr_decay == "cosine" and self.decay_steps == 0:
            return dataclasses.replace(self, decay_steps=max(1, steps - self.warmup_steps))
        return self

    def effective_lr(self, batch_size: int, devices: int = 1) -> float:
        """The learning rate the optimizer uses (Tab. 12-15 state it for one device)."""
        return self.lr * batch_size * devices * self.accumulate if self.scale_lr else self.lr
