"""Optimisation settings of autoencoder training (Eq. 25); each preset's values are in `recipes.py`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from ldm.config import Config, check_literals


@dataclass(frozen=True)
class TrainConfig(Config):
    """Optimisation and loss weights of autoencoder training (reference values as defaults)."""

    section = "train"

    lr: float = 4.5e-6  # with scale_lr: per sample, multiplied by batch x devices (the reference's base lr)
    scale_lr: bool = False  # the reference's rule: effective lr = lr x batch x devices
    disc_lr: float = 0.0  # 0: same as lr
    beta1: float = 0.5  # Adam betas (0.5, 0.9), as the reference
    beta2: float = 0.9
    kl_weight: float = 1.0e-6  # KL models
    codebook_weight: float = 1.0  # VQ models
    perceptual_weight: float = 1.0  # LPIPS in L_rec; 0 trains without VGG
    disc_weight: float = 0.5  # scales d_w; 0 disables the discriminator
    disc_start: int = 50001  # batch index at which the GAN terms switch on
    disc_layers: int = 3
    disc_channels: int = 64
    grad_clip: float = 0.0  # max gradient norm per optimizer; 0: off
    ema_decay: float = 0.0  # EMA of the autoencoder weights; 0: off
    sample_posterior: bool = True  # KL: decode a posterior sample, not its mean
    vq_restart_every: int = 0  # VQ: restart unused codes every this many batches; 0: off
    seed: int = 0  # posterior sampling and code restarts
    lr_decay: Literal["constant", "cosine"] = "constant"  # cosine: both lrs decay to 0 over decay_steps batches
    decay_steps: int = 0  # cosine: batches to decay over; 0: all of the run's batches (see `resolved`)
    max_bad_steps: int = 3  # batches in a row with a NaN/inf loss that are skipped; one more stops training

    def __post_init__(self) -> None:
        check_literals(self, "train")
        for name in ("lr", "disc_lr", "kl_weight", "codebook_weight", "perceptual_weight",
                     "disc_weight", "grad_clip", "disc_start", "vq_restart_every", "decay_steps", "max_bad_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"train.lr must be > 0, got {self.lr}")
        for name in ("beta1", "beta2", "ema_decay"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"train.{name} must be in [0, 1), got {getattr(self, name)}")
        if self.disc_layers < 1 or self.disc_channels < 1:
            raise ValueError("train.disc_layers and train.disc_channels must be >= 1")


    def effective_lr(self, batch_size: int, devices: int = 1) -> float:
        """The learning rate the optimizers use."""
        return self.lr * batch_size * devices if self.scale_lr else self.lr

    def resolved(self, steps: int) -> TrainConfig:
        """This config for a run of `steps` batches: a cosine decay with decay_steps 0 spans the whole run."""
        if self.lr_decay == "cosine" and self.decay_steps == 0:
            return dataclasses.replace(self, decay_steps=steps)
        return self
