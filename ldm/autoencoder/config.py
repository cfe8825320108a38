"""Typed configuration of the first-stage autoencoders (Appendix F, Tab. 8).

Levels are counted from the input: level 0 runs at full resolution, level i at
1/2**i of it, and the latent sits at the last level, so the downsampling
factor is f = 2 ** (len(ch_mult) - 1). Attention is placed by level, not by
pixel resolution as in the reference (`attn_resolutions`), so one config works
at any input size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from ldm.config import Config

Kind = Literal["kl", "vq"]


@dataclass(frozen=True)
class AutoencoderConfig(Config):
    """Hyperparameters of a KL- or VQ-regularized autoencoder."""

    section = "autoencoder"

    kind: Kind
    ch: int = 128  # base channel count
    ch_mult: tuple[int, ...] = (1, 2, 4)  # channel multiplier per level
    num_res_blocks: int = 2  # encoder res blocks per level (decoder: one more)
    attn_levels: tuple[int, ...] = ()  # levels with attention after every res block
    mid_attn: bool = True  # attention between the two mid res blocks
    z_channels: int = 3  # encoder output / decoder input channels
    embed_dim: int = 3  # latent channels after quant_conv (the LDM's input)
    n_embed: int = 0  # codebook size |Z| (VQ only)
    beta: float = 0.25  # commitment weight (VQ only)
    codebook_dim: int = 0  # VQ lookup dimension, a linear projection of embed_dim (ViT-VQGAN); 0: embed_dim
    codebook_l2: bool = False  # VQ: l2-normalise z and codes, cosine-distance lookup (ViT-VQGAN)
    codebook_ema: float = 0.0  # VQ: EMA decay of the codebook (VQ-VAE App. A.1); 0: learned by gradients
    in_channels: int = 3
    out_channels: int = 3
    dropout: float = 0.0
    norm_groups: int = 32

    def __post_init__(self) -> None:
        # Frozen dataclass: coerce lists (from YAML/JSON) to tuples in place.
        object.__setattr__(self, "ch_mult", tuple(self.ch_mult))
        object.__setattr__(self, "attn_levels", tuple(self.attn_levels))
        self._validate()

    @property
    def double_z(self) -> bool:
        """Whether the encoder emits mean and log-variance (KL) or one z (VQ)."""
        return self.kind == "kl"

    @property
    def num_levels(self) -> int:
        """Number of resolution levels."""
        return len(self.ch_mult)

    @property
    def downsample_factor(self) -> int:
        """Spatial downsampling factor f between image and latent."""
        return 2 ** (len(self.ch_mult) - 1)

    def _validate(self) -> None:
        if self.kind not in get_args(Kind):
            raise ValueError(f"autoencoder kind must be one of {get_args(Kind)}, got {self.kind!r}")
        for name in ("ch", "num_res_blocks", "z_channels", "embed_dim", "in_channels",
                     "out_channels", "norm_groups"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"autoencoder.{name} must be a positive integer, got {value!r}")
        if not self.ch_mult or any(not isinstance(m, int) or m < 1 for m in self.ch_mult):
            raise ValueError(f"autoencoder.ch_mult must be positive integers, got {self.ch_mult}")
        for level in self.attn_levels:
            if not 0 <= level < self.num_levels:
                raise ValueError(
                    f"autoencoder.attn_levels: level {level} is outside 0..{self.num_levels - 1}"
                    f" (ch_mult has {self.num_levels} levels)"
                )
        for mult in self.ch_mult:
            if (self.ch * mult) % self.norm_groups:
                raise ValueError(
                    f"autoencoder: channels {self.ch * mult} (ch {self.ch} x mult {mult}) are not"
                    f" divisible by norm_groups {self.norm_groups}"
                )
        if self.kind == "vq" and self.n_embed < 2:
            raise ValueError(f"autoencoder.n_embed (codebook size) must be >= 2 for kind 'vq', got {self.n_embed}")
        if self.kind == "kl" and self.n_embed:
            raise ValueError("autoencoder.n_embed is a VQ setting; set it to 0 for kind 'kl'")
        self._validate_codebook()
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"autoencoder.dropout must be in [0, 1), got {self.dropout}")

    def _validate_codebook(self) -> None:
        if not isinstance(self.codebook_dim, int) or isinstance(self.codebook_dim, bool) or self.codebook_dim < 0:
            raise ValueError(f"autoencoder.codebook_dim must be an integer >= 0 (0: embed_dim), got {self.codebook_dim!r}")
        if not 0.0 <= self.codebook_ema < 1.0:
            raise ValueError(f"autoencoder.codebook_ema (EMA decay) must be in [0, 1), got {self.codebook_ema}")
        if self.kind == "kl" and (self.codebook_dim or self.codebook_l2 or self.codebook_ema):
            raise ValueError("autoencoder.codebook_dim/codebook_l2/codebook_ema are VQ settings; leave them at"
                             " 0/false/0 for kind 'kl'")
