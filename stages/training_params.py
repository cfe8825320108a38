"""params.yaml sections of the model stages: autoencoder, latent cache, LDM training.

The loss and optimiser fields mirror the `TrainConfig` dataclasses of `ldm/`
(one definition of each field); their defaults here are the measured CPU
recipes of the embedded default, not the reference's GPU values.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from ldm.autoencoder import presets as autoencoder_presets
from ldm.autoencoder.train_config import TrainConfig as AutoencoderTrainConfig
from ldm.autoencoder.train_config import cpu_train_config
from stages.params import Section, dataclass_section

Precision = Literal["auto", "32-true", "bf16-mixed", "16-mixed"]


class AutoencoderParams(Section):
    """The first stage (Appendix F, Tab. 8): a preset of the reference zoo or a tiny CPU one."""

    preset: str = Field("kl-f4-tiny", description="`ldm presets` lists them")

    @field_validator("preset")
    @classmethod
    def _known(cls, value: str) -> str:
        known = autoencoder_presets()
        if value not in known:
            raise ValueError(f"must be one of {', '.join(known)}")
        return value


AutoencoderLoss = dataclass_section(AutoencoderTrainConfig, "AutoencoderLoss", defaults=cpu_train_config().train)


class TrainAutoencoderParams(Section):
    """Stage `train_autoencoder`: batches, checkpoints, offline weights and the loss (Eq. 25)."""

    steps: int = Field(cpu_train_config().steps, ge=1, le=10_000_000, description="training batches")
    batch_size: int = Field(cpu_train_config().batch_size, ge=1, le=4096)
    shuffle_buffer: int = Field(1000, ge=0, le=1_000_000, description="samples; 0 keeps shard order")
    seed: int = Field(0, ge=0, description="weights init and data order")
    threads: int = Field(2, ge=1, le=256, description="CPU threads for torch")
    precision: Precision = "auto"
    val_every: int = Field(200, ge=1, description="batches between validation passes")
    checkpoint_every: int = Field(200, ge=1, description="batches between checkpoints")
    grid_images: int = Field(8, ge=1, le=64, description="originals | reconstructions in the report PNG")
    vgg_weights: str = Field("", description="LPIPS VGG16 file; empty: the torch hub cache")
    inception_weights: str = Field("", description="rFID Inception file; empty: torch-fidelity's cache")
    loss: AutoencoderLoss = AutoencoderLoss()  # type: ignore[valid-type]


class CacheLatentsParams(Section):
    """Stage `cache_latents`: encode the shards once and measure the latent scale (App. F, C.1)."""

    posterior: Literal["mode", "sample"] = Field("mode", description="KL: the posterior mean, or a sample seeded per key")
    seed: int = Field(0, ge=0, description="posterior samples")
    dtype: Literal["float16", "float32"] = "float16"
    batch_size: int = Field(64, ge=1, le=4096, description="images per encoder call")
    pairs: bool = Field(True, description="also cache the degrade stage's HR latents with their LR images")
    scale_rule: Literal["auto", "dataset", "first_batch", "fixed", "none"] = Field(
        "auto", description="auto: 1/dataset std for KL, 1.0 for VQ")
    scale_value: float = Field(1.0, gt=0.0, description="the factor when scale_rule is fixed")
    std_tolerance: float = Field(0.02, gt=0.0, le=1.0, description="warn when the scaled std is further than this from 1")
    accelerator: Literal["auto", "cpu", "gpu"] = "auto"
    devices: int | Literal["auto"] = Field("auto", description="encoders in parallel, shards split by rank")
    strategy: Literal["auto", "ddp", "ddp_spawn"] = "auto"
    threads: int = Field(2, ge=1, le=256, description="CPU threads for torch")

    @field_validator("devices")
    @classmethod
    def _positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError(f"must be 'auto' or >= 1, got {value}")
        return value
