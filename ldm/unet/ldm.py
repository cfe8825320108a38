"""A latent diffusion model: the denoising UNet with its conditioning encoder (Sec. 3.3, Fig. 3).

Conditions by kind (ConditioningConfig.kind):
    none     cond is None
    class    cond is [N] long labels; label n_classes is the null class
    text     cond is [N x L] long token ids (see ldm.conditioning.tokenize)
    concat   cond is {key: [N x C_k x H_k x W_k]}, e.g. {"lr": low-resolution image in [-1, 1]}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ldm.conditioning import ClassEmbedder, ConcatConditioner, ConditioningConfig, build_conditioner
from ldm.diffusion import DiffusionConfig, NoiseSchedule, load_config, to_plain
from ldm.unet.config import UNetConfig
from ldm.unet.model import UNet

Condition = Tensor | dict[str, Tensor] | None


@dataclass(frozen=True)
class LDMConfig:
    """Everything that defines a latent diffusion model; saved next to its weights."""

    unet: UNetConfig
    conditioning: ConditioningConfig = field(default_factory=ConditioningConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    latent_channels: int = 3
    latent_size: tuple[int, int] = (64, 64)  # (h, w) of the first stage's latent at training size
    first_stage: str = ""  # the autoencoder preset it pairs with (ldm.autoencoder presets)
    # Parameters the paper's model size counts that this module does not hold: the first
    # stage (BSR-SR) or weights the reference builds but never uses. Documented per preset.
    paper_extra_params: int = 0

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
        if c.kind in ("class", "text") and (u.attention != "cross" or u.context_dim != c.context_dim):
            raise ValueError(
                f"ldm: {c.kind} conditioning is cross-attended; set unet.attention 'cross' and"
                f" unet.context_dim {c.context_dim} (got {u.attention!r}, {u.context_dim})"
            )
        if c.kind in ("none", "concat") and u.attention == "cross":
            raise ValueError(f"ldm: {c.kind} conditioning has no tokens to cross-attend; use unet.attention 'self'")
        if any(s % u.downsample_factor for s in self.latent_size):
            raise ValueError(f"ldm: latent_size {self.latent_size} must be multiples of {u.downsample_factor}")

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the latents the model is trained on."""
        return (self.latent_channels, *self.latent_size)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON next to the weights."""
        return to_plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LDMConfig:
        """Strict load: unknown keys and wrong types are errors naming the key."""
        if "unet" not in data:
            raise ValueError("ldm: missing required key 'unet'")
        return load_config(cls, data, "ldm")


class LatentDiffusionModel(nn.Module):
    """The trainable part of an LDM: UNet eps_theta and conditioning encoder tau_theta."""

    def __init__(self, config: LDMConfig):
        super().__init__()
        self.config = config
        self.unet = UNet(config.unet)
        self.cond_model = build_conditioner(config.conditioning)
        self.schedule: NoiseSchedule = config.diffusion.make_schedule()

    @property
    def diffusion(self) -> DiffusionConfig:
        """The schedule and objective this model is trained with."""
        return self.config.diffusion

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the latents."""
        return self.config.latent_shape

    def num_parameters(self) -> int:
        """Parameters of the UNet and the conditioning encoder together."""
        return sum(p.numel() for p in self.parameters())

    def paper_parameter_count(self) -> int:
        """num_parameters() plus what the paper's size also counts (config.paper_extra_params)."""
        return self.num_parameters() + self.config.paper_extra_params

    def null_condition(self, n: int, device: torch.device | str) -> Tensor:
        """Null-class labels [N] for classifier-free guidance (class models)."""
        if not isinstance(self.cond_model, ClassEmbedder):
            raise ValueError("null_condition: only class models have a null label; text models use the empty prompt")
        return torch.full((n,), self.cond_model.null_class, dtype=torch.long, device=device)

    def encode_condition(self, cond: Condition, size: tuple[int, int]) -> tuple[Tensor | None, Tensor | None]:
        """(context [N x M x D] for cross-attention or None, concat [N x C_c x h x w] or None)."""
        kind = self.config.conditioning.kind
        if kind == "none":
            return None, None
        if cond is None:
            raise ValueError(f"this model is {kind}-conditioned; pass a condition")
        if kind == "concat":
            assert isinstance(self.cond_model, ConcatConditioner)
            if not isinstance(cond, dict):
                raise ValueError(f"concat conditioning takes a dict with keys {list(self.cond_model.keys)}")
            return None, self.cond_model(cond, size)
        return self.cond_model(cond), None  # class: (N, 1, D); text: (N, L, D)

    def forward(self, xt: Tensor, t: Tensor, cond: Condition = None) -> Tensor:
        """xt [N x C x h x w], t [N] long, cond (see module doc) -> model output [N x C x h x w]."""
        context, concat = self.encode_condition(cond, tuple(xt.shape[-2:]))
        x_in = xt if concat is None else torch.cat([xt, concat.to(xt.dtype)], dim=1)  # (N, C + C_c, h, w)
        return self.unet(x_in, t, context=context)


def build_ldm(name_or_config: str | LDMConfig) -> LatentDiffusionModel:
    """Build a model from a preset name (see presets()) or an LDMConfig."""
    from ldm.unet.presets import preset_config

    config = preset_config(name_or_config) if isinstance(name_or_config, str) else name_or_config
    return LatentDiffusionModel(config)


# ---------------------------------------------------------------------------
# Weights and config as one safetensors payload (no file I/O here)
# ---------------------------------------------------------------------------

def to_safetensors_payload(model: LatentDiffusionModel, scale_factor: float | None = None,
                           extra: dict[str, str] | None = None) -> tuple[dict[str, Tensor], dict[str, str]]:
    """(tensors, metadata) for safetensors.torch.save_file: weights plus config JSON and scale factor."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    metadata = {"ldm_config": json.dumps(model.config.to_dict())}
    if scale_factor is not None:
        metadata["scale_factor"] = repr(float(scale_factor))
    metadata.update(extra or {})
    return tensors, metadata


def from_safetensors_payload(tensors: dict[str, Tensor], metadata: dict[str, str]) -> LatentDiffusionModel:
    """Rebuild a model from what to_safetensors_payload produced (strict: every key must match)."""
    if "ldm_config" not in metadata:
        raise ValueError("safetensors metadata has no 'ldm_config'; was it written by to_safetensors_payload?")
    model = LatentDiffusionModel(LDMConfig.from_dict(json.loads(metadata["ldm_config"])))
    model.load_state_dict(tensors, strict=True)
    return model
