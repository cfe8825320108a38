"""The configs of an LDM, with no torch import: the ablated UNet (Dhariwal & Nichol as used by LDM, Tab. 12-16)
and the whole model (UNet, conditioning, diffusion, latent shape and scale factor)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ldm.conditioning.config import ConditioningConfig
from ldm.config import Config, check_literals
from ldm.diffusion.config import DiffusionConfig

AttentionKind = Literal["self", "cross"]


@dataclass(frozen=True)
class UNetConfig(Config):
    """The denoiser eps_theta(z_t, t, tau(y)); levels are counted from the input resolution."""

    section = "unet"

    in_channels: int = 3  # latent channels (+ concat-conditioning channels)
    out_channels: int = 3
    model_channels: int = 64  # "Channels" in Tab. 12-15
    channel_mult: tuple[int, ...] = (1, 2, 4)  # "Channel Multiplier"
    num_res_blocks: int = 2  # "Depth"
    # Downsampling factors (1 = the latent's own resolution) that get attention, as the
    # reference's `attention_resolutions`: at a 64x64 latent, resolutions 32,16,8 -> 2,4,8.
    attention_resolutions: tuple[int, ...] = ()
    attention: AttentionKind = "self"  # "cross": SpatialTransformer of Tab. 16 (needs context_dim)
    num_heads: int = -1  # heads per attention layer; set this or num_head_channels
    num_head_channels: int = -1  # channels per head ("Head Channels")
    transformer_depth: int = 1  # T in Tab. 16 ("Transformer Depth")
    context_dim: int = 0  # d_tau of the conditioning tokens; 0 with attention "self"
    use_scale_shift_norm: bool = False  # FiLM-style norm in res blocks (churches)
    resblock_updown: bool = False  # res blocks do the up/down sampling (churches)
    conv_resample: bool = True  # 3x3 convs in the plain up/down samplers
    mid_attention: bool = True  # attention in the middle block (the reference always has it)
    dropout: float = 0.0
    use_checkpoint: bool = False  # gradient checkpointing of res and attention blocks
    norm_groups: int = 32

    def __post_init__(self) -> None:
        object.__setattr__(self, "channel_mult", tuple(self.channel_mult))
        object.__setattr__(self, "attention_resolutions", tuple(self.attention_resolutions))
        check_literals(self, "unet")
        self._validate()

    @property
    def num_levels(self) -> int:
        """Number of resolution levels, len(channel_mult)."""
        return len(self.channel_mult)

    @property
    def downsample_factor(self) -> int:
        """Total spatial downsampling inside the UNet: latent sides must be multiples of it."""
        return 2 ** (self.num_levels - 1)

    def heads_for(self, channels: int) -> tuple[int, int]:
        """(number of heads, channels per head) of an attention layer at `channels` width."""
        if self.num_head_channels > 0:
            return channels // self.num_head_channels, self.num_head_channels
        return self.num_heads, channels // self.num_heads

    def _validate(self) -> None:
        for name in ("in_channels", "out_channels", "model_channels", "num_res_blocks",
                     "transformer_depth", "norm_groups"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"unet.{name} must be a positive integer, got {value!r}")
        if not self.channel_mult or any(m < 1 for m in self.channel_mult):
            raise ValueError(f"unet.channel_mult must be positive integers, got {self.channel_mult}")
        reachable = [2**i for i in range(self.num_levels)]
        for factor in self.attention_resolutions:
            if factor not in reachable:
                raise ValueError(
                    f"unet.attention_resolutions: factor {factor} is never reached by a"
                    f" {self.num_levels}-level UNet (reachable factors: {reachable})"
                )
        if (self.num_heads > 0) == (self.num_head_channels > 0):
            raise ValueError(
                "unet: set exactly one of num_heads and num_head_channels (the other to -1),"
                f" got num_heads={self.num_heads}, num_head_channels={self.num_head_channels}"
            )
        widths = {self.model_channels * m for m in self.channel_mult}
        for width in sorted(widths):
            if width % self.norm_groups:
                raise ValueError(f"unet: width {width} is not divisible by norm_groups {self.norm_groups}")
            heads, dim_head = self.heads_for(width)
            if heads < 1 or heads * dim_head != width:
                raise ValueError(
                    f"unet: width {width} does not split into heads"
                    f" (num_heads={self.num_heads}, num_head_channels={self.num_head_channels})"
                )
        if self.attention == "cross" and self.context_dim < 1:
            raise ValueError("unet.attention 'cross' needs context_dim > 0 (the conditioning token width)")
        if self.attention == "self" and self.context_dim:
            raise ValueError("unet.context_dim is only used with attention 'cross'; set it to 0")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"unet.dropout must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class LDMConfig(Config):
    """Everything that defines a latent diffusion model; saved next to its weights (config.json)."""

    section = "ldm"

    unet: UNetConfig
    conditioning: ConditioningConfig = field(default_factory=ConditioningConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    latent_channels: int = 3
    latent_size: tuple[int, int] = (64, 64)  # (h, w) of the first stage's latent at training size
    first_stage: str = ""  # the autoencoder preset it pairs with (ldm.autoencoder presets)
    # Parameters the paper's model size counts that this module does not hold: the first
    # stage (BSR-SR) or weights the reference builds but never uses. Documented per preset.
    paper_extra_params: int = 0
    # The latent scale (App. F): the model sees z_autoencoder * scale_factor. Measured over
    # the whole cache by cache_latents and set here by train_ldm; never a constant.
    scale_factor: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "latent_size", tuple(self.latent_size))
        if len(self.latent_size) != 2:
            raise ValueError(f"ldm.latent_size must be [height, width], got {list(self.latent_size)}")
        u, c = self.unet, self.conditioning
        if u.in_channels != self.latent_channels + c.extra_in_channels:
            raise ValueError(
                f"ldm: unet.in_channels {u.in_channels} must equal latent_channels {self.latent_channels}"
                f" + concat channels {c.extra_in_channels}"
            )
        if u.out_channels != self.latent_channels:
            raise ValueError(f"ldm: unet.out_channels {u.out_channels} must equal latent_channels {self.latent_channels}")
        if c.kind in ("class", "text", "layout") and (u.attention != "cross" or u.context_dim != c.context_dim):
            raise ValueError(
                f"ldm: {c.kind} conditioning is cross-attended; set unet.attention 'cross' and"
                f" unet.context_dim {c.context_dim} (got {u.attention!r}, {u.context_dim})"
            )
        if c.kind in ("none", "concat", "semantic") and u.attention == "cross":
            raise ValueError(f"ldm: {c.kind} conditioning has no tokens to cross-attend; use unet.attention 'self'")
        if not self.scale_factor > 0:
            raise ValueError(f"ldm.scale_factor must be > 0, got {self.scale_factor}")
        if any(s % u.downsample_factor for s in self.latent_size):
            raise ValueError(f"ldm: latent_size {self.latent_size} must be multiples of {u.downsample_factor}")

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the latents the model is trained on."""
        return (self.latent_channels, *self.latent_size)

    @classmethod
    def from_dict(cls, data: dict) -> LDMConfig:
        """Strict load: unknown keys and wrong types are errors naming the key."""
        if "unet" not in data:
            raise ValueError("ldm: missing required key 'unet'")
        return super().from_dict(data)
