"""The LDM denoiser: ablated UNet with cross-attention, model presets and Lightning training."""

from ldm.unet.attention import AttentionBlock, CrossAttention, GEGLUFeedForward, SpatialTransformer
from ldm.unet.blocks import ResBlock, timestep_embedding
from ldm.unet.config import AttentionKind, UNetConfig
from ldm.unet.ldm import (
    LatentDiffusionModel,
    LDMConfig,
    build_ldm,
    from_safetensors_payload,
    to_safetensors_payload,
)
from ldm.unet.model import UNet
from ldm.unet.presets import TXT2IMG_UNUSED_LM_HEAD, VQ_F4_PARAMS, preset_config, presets

__all__ = [
    "AttentionBlock",
    "AttentionKind",
    "CrossAttention",
    "GEGLUFeedForward",
    "LDMConfig",
    "LatentDiffusionModel",
    "ResBlock",
    "SpatialTransformer",
    "TXT2IMG_UNUSED_LM_HEAD",
    "UNet",
    "UNetConfig",
    "VQ_F4_PARAMS",
    "build_ldm",
    "from_safetensors_payload",
    "preset_config",
    "presets",
    "timestep_embedding",
    "to_safetensors_payload",
]
