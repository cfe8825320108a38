"""A latent diffusion model: the denoising UNet with its conditioning encoder (Sec. 3.3, Fig. 3).

Conditions by kind (ConditioningConfig.kind):
    none     cond is None
    class    cond is [N] long labels; label n_classes is the null class
    text     cond is [N x L] long token ids (see ldm.conditioning.tokenize)
    layout   cond is [N x L] long box tokens, L = 3 B + 2 (see ldm.conditioning.layout.LayoutTokenizer)
    concat   cond is {key: [N x C_k x H_k x W_k]}, e.g. {"lr": low-resolution image in [-1, 1]}
    semantic cond is [N x H x W] long label maps at image size (f x the latent's), IGNORE_INDEX unlabelled
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ldm.conditioning.encoders import ClassEmbedder, ConcatConditioner, SemanticConditioner, build_conditioner
from ldm.diffusion.config import DiffusionConfig
from ldm.diffusion.schedule import NoiseSchedule
from ldm.latent_diffusion.config import LDMConfig
from ldm.latent_diffusion.unet import UNet

Condition = Tensor | dict[str, Tensor] | None


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
        if kind == "semantic":
            assert isinstance(self.cond_model, SemanticConditioner)
            if not isinstance(cond, Tensor):
                raise ValueError("semantic conditioning takes label maps [N x H x W] long")
            return None, self.cond_model(cond, size)
        return self.cond_model(cond), None  # class: (N, 1, D); text, layout: (N, L, D)

    def forward(self, xt: Tensor, t: Tensor, cond: Condition = None) -> Tensor:
        """xt [N x C x h x w], t [N] long, cond (see module doc) -> model output [N x C x h x w]."""
        context, concat = self.encode_condition(cond, tuple(xt.shape[-2:]))
        x_in = xt if concat is None else torch.cat([xt, concat.to(xt.dtype)], dim=1)  # (N, C + C_c, h, w)
        return self.unet(x_in, t, context=context)


def build_ldm(name_or_config: str | LDMConfig) -> LatentDiffusionModel:
    """Build a model from a preset name (see preset_names()) or an LDMConfig."""
    from ldm.latent_diffusion.presets import preset_config

    config = preset_config(name_or_config) if isinstance(name_or_config, str) else name_or_config
    return LatentDiffusionModel(config)
