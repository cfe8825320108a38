"""An LDM preset made concrete for one run, with no torch import: research settings and its first stage.

`ModelSettings` are the research knobs params may turn on top of a preset
(parameterization, schedule, loss, gradient checkpointing, dropout). `paired_config`
fits a preset to the first stage it runs on: the preset follows the chosen
autoencoder's latent channels and the data's latent size (the UNet is
convolutional), and every mismatch it cannot fit is a ValueError saying which
setting to change.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ldm.autoencoder.config import AutoencoderConfig
from ldm.conditioning.config import BERT_VOCAB_SIZE, TokenizerKind
from ldm.config import Config, check_literals
from ldm.diffusion.config import DiffusionConfig, LossType, Parameterization, ScheduleKind
from ldm.latent_diffusion.config import LDMConfig, UNetConfig
from ldm.masks.config import MASKED_IMAGE


@dataclass(frozen=True)
class ModelSettings(Config):
    """Research settings of an LDM (Appendix A, D.1); a preset states its own (`of`)."""

    section = "model"

    parameterization: Parameterization = DiffusionConfig.parameterization  # eps (the paper) | x0 | v
    schedule: ScheduleKind = DiffusionConfig.schedule
    linear_start: float = DiffusionConfig.linear_start  # beta_1 of the linear schedules
    linear_end: float = DiffusionConfig.linear_end  # beta_T
    loss_type: LossType = DiffusionConfig.loss_type  # l2 (Eq. 1) | l1
    min_snr_gamma: float | None = DiffusionConfig.min_snr_gamma  # min-SNR-gamma loss weight; null: off
    use_checkpoint: bool = UNetConfig.use_checkpoint  # gradient checkpointing: less memory, ~30% slower steps
    dropout: float = UNetConfig.dropout  # in the UNet's res blocks (Tab. 15: 0.1 for COCO layouts)
    tokenizer: TokenizerKind = "learned"  # text models: bert (bert-base-uncased, D.2.1) | learned from the captions

    def __post_init__(self) -> None:
        check_literals(self, "model")
        DiffusionConfig(schedule=self.schedule, linear_start=self.linear_start, linear_end=self.linear_end,
                        parameterization=self.parameterization, loss_type=self.loss_type,
                        min_snr_gamma=self.min_snr_gamma)  # the library's own checks, with its messages
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), got {self.dropout}")

    @classmethod
    def of(cls, config: LDMConfig) -> ModelSettings:
        """The settings a config already holds."""
        d, u = config.diffusion, config.unet
        return cls(parameterization=d.parameterization, schedule=d.schedule, linear_start=d.linear_start,
                   linear_end=d.linear_end, loss_type=d.loss_type, min_snr_gamma=d.min_snr_gamma,
                   use_checkpoint=u.use_checkpoint, dropout=u.dropout, tokenizer=config.conditioning.tokenizer)

    def apply_to(self, config: LDMConfig) -> LDMConfig:
        """`config` with these settings."""
        diffusion = dataclasses.replace(
            config.diffusion, parameterization=self.parameterization, schedule=self.schedule,
            linear_start=self.linear_start, linear_end=self.linear_end, loss_type=self.loss_type,
            min_snr_gamma=self.min_snr_gamma)
        unet = dataclasses.replace(config.unet, use_checkpoint=self.use_checkpoint, dropout=self.dropout)
        conditioning = config.conditioning
        if conditioning.kind == "text" and self.tokenizer != conditioning.tokenizer:
            vocab = BERT_VOCAB_SIZE if self.tokenizer == "bert" else conditioning.vocab_size  # learned: up to it
            conditioning = dataclasses.replace(conditioning, tokenizer=self.tokenizer, vocab_size=vocab)
        return dataclasses.replace(config, diffusion=diffusion, unet=unet, conditioning=conditioning)


def paired_config(preset: LDMConfig, first_stage: str, autoencoder: AutoencoderConfig, resolution: int) -> LDMConfig:
    """`preset` fitted to the autoencoder `first_stage` at `resolution` px: its latent channels and size.

    ValueError (naming the setting to change) when the resolution does not divide into the
    autoencoder's factor f and the UNet's levels.
    """
    f = autoencoder.downsample_factor
    if resolution % f:
        raise ValueError(f"data.resolution {resolution} is not a multiple of the downsampling factor f={f} of "
                         f"autoencoder {first_stage!r}; pick a multiple of {f} or a first stage with a smaller f")
    side, z = resolution // f, autoencoder.embed_dim
    if side % preset.unet.downsample_factor:
        raise ValueError(f"the latents of {resolution} px through {first_stage!r} are {side}x{side}, which the "
                         f"UNet's {preset.unet.num_levels} levels cannot halve {preset.unet.num_levels - 1} times; "
                         f"raise data.resolution to a multiple of {f * preset.unet.downsample_factor}")
    cond = preset.conditioning
    if cond.kind == "concat" and MASKED_IMAGE in cond.concat_keys:  # inpainting: the masked image's latent has z channels
        channels = tuple(z if key == MASKED_IMAGE else c for key, c in zip(cond.concat_keys, cond.concat_channels))
        cond = dataclasses.replace(cond, concat_channels=channels)
    if cond.kind == "semantic":  # label maps at image size halve log2(f) times to the latent's
        cond = dataclasses.replace(cond, rescaler_stages=f.bit_length() - 1)
    unet = dataclasses.replace(preset.unet, in_channels=z + cond.extra_in_channels, out_channels=z)
    return dataclasses.replace(preset, unet=unet, conditioning=cond, latent_channels=z, latent_size=(side, side),
                               first_stage=first_stage)
