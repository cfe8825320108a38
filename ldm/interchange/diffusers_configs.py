"""The `config.json` of each diffusers component, from our configs; and the check of a foreign one against them.

Written by hand (diffusers is needed only to load the result), for the diffusers
version the tests load them with (`DIFFUSERS_VERSION`). What diffusers cannot
express is refused with the reason: a UNet2DModel has one channels-per-head for
every level, a UNet2DConditionModel no res-block resampling, a VAE no
latent width other than its z channels.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ldm.autoencoder.config import AutoencoderConfig
from ldm.conditioning.config import ConditioningConfig
from ldm.diffusion.config import DiffusionConfig
from ldm.errors import InvalidInput
from ldm.latent_diffusion.config import UNetConfig

DIFFUSERS_VERSION = "0.42.1"
SCHEDULES = {"linear": "scaled_linear", "sqrt_linear": "linear", "cosine": "squaredcos_cap_v2"}  # ours -> diffusers
PREDICTIONS = {"eps": "epsilon", "v": "v_prediction", "x0": "sample"}


def _head(name: str) -> dict[str, str]:
    return {"_class_name": name, "_diffusers_version": DIFFUSERS_VERSION}


def vae_config(cfg: AutoencoderConfig, scale_factor: float, sample_size: int) -> dict[str, Any]:
    """AutoencoderKL or VQModel config of a first stage; scaling_factor is the LDM's scale factor."""
    attn = [level in cfg.attn_levels for level in range(cfg.num_levels)]
    common = {
        "in_channels": cfg.in_channels, "out_channels": cfg.out_channels,
        "down_block_types": ["AttnDownEncoderBlock2D" if a else "DownEncoderBlock2D" for a in attn],
        "up_block_types": ["AttnUpDecoderBlock2D" if a else "UpDecoderBlock2D" for a in reversed(attn)],
        "block_out_channels": [cfg.ch * m for m in cfg.ch_mult], "layers_per_block": cfg.num_res_blocks,
        "act_fn": "silu", "latent_channels": cfg.z_channels, "norm_num_groups": cfg.norm_groups,
        "sample_size": sample_size, "scaling_factor": scale_factor, "mid_block_add_attention": cfg.mid_attn,
        "force_upcast": False,
    }
    if cfg.kind == "kl":
        if cfg.embed_dim != cfg.z_channels:
            raise InvalidInput(f"diffusers' AutoencoderKL needs embed_dim == z_channels, got {cfg.embed_dim} and"
                               f" {cfg.z_channels}")
        return {**_head("AutoencoderKL"), **common, "use_quant_conv": True, "use_post_quant_conv": True}
    if cfg.codebook_dim or cfg.codebook_l2:
        raise InvalidInput("diffusers' VQModel has no factorised or l2-normalised codebook (codebook_dim/codebook_l2)")
    return {**_head("VQModel"), **common, "num_vq_embeddings": cfg.n_embed, "vq_embed_dim": cfg.embed_dim,
            "norm_type": "group", "lookup_from_codebook": False}


def _levels(cfg: UNetConfig) -> list[bool]:
    return [2**level in cfg.attention_resolutions for level in range(cfg.num_levels)]


def _common_unet(cfg: UNetConfig, latent_size: tuple[int, int]) -> dict[str, Any]:
    return {
        "sample_size": list(latent_size) if latent_size[0] != latent_size[1] else latent_size[0],
        "in_channels": cfg.in_channels, "out_channels": cfg.out_channels, "center_input_sample": False,
        "flip_sin_to_cos": True, "freq_shift": 0, "block_out_channels": [cfg.model_channels * m for m in cfg.channel_mult],
        "layers_per_block": cfg.num_res_blocks, "downsample_padding": 1, "mid_block_scale_factor": 1,
        "dropout": cfg.dropout, "act_fn": "silu", "norm_num_groups": cfg.norm_groups, "norm_eps": 1e-5,
        "resnet_time_scale_shift": "scale_shift" if cfg.use_scale_shift_norm else "default",
    }


def unet_config(cfg: UNetConfig, latent_size: tuple[int, int]) -> dict[str, Any]:
    """UNet2DModel (self-attention) or UNet2DConditionModel (cross-attention) config of our UNet."""
    if not cfg.conv_resample:
        raise InvalidInput("diffusers' UNets resample with convolutions; unet.conv_resample false has no counterpart")
    attn = _levels(cfg)
    widths = [cfg.model_channels * m for m in cfg.channel_mult]
    if cfg.attention == "self":
        used = [w for w, a in zip(widths, attn) if a] + ([widths[-1]] if cfg.mid_attention else [])
        head_dims = {cfg.heads_for(w)[1] for w in used}
        if len(head_dims) > 1:
            raise InvalidInput(f"diffusers' UNet2DModel has one channels-per-head for every level; this UNet has"
                               f" {sorted(head_dims)} (num_heads {cfg.num_heads} at widths {used})")
        resample = "resnet" if cfg.resblock_updown else "conv"
        if cfg.resblock_updown and not all(attn):
            raise InvalidInput("diffusers' UNet2DModel resamples with res blocks only in attention levels;"
                               " this UNet has resblock_updown with levels without attention")
        return {**_head("UNet2DModel"), **_common_unet(cfg, latent_size), "time_embedding_type": "positional",
                "down_block_types": ["AttnDownBlock2D" if a else "DownBlock2D" for a in attn],
                "up_block_types": ["AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)],
                "attention_head_dim": head_dims.pop() if head_dims else None, "attn_norm_num_groups": cfg.norm_groups,
                "add_attention": cfg.mid_attention, "downsample_type": resample, "upsample_type": resample}
    if cfg.resblock_updown or not cfg.mid_attention:
        raise InvalidInput("diffusers' UNet2DConditionModel has no res-block resampling and always attends in the"
                           " middle block (unet.resblock_updown true / mid_attention false)")
    return {**_head("UNet2DConditionModel"), **_common_unet(cfg, latent_size),
            "down_block_types": ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attn],
            "mid_block_type": "UNetMidBlock2DCrossAttn",
            "up_block_types": ["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)],
            "only_cross_attention": False, "cross_attention_dim": cfg.context_dim,
            "transformer_layers_per_block": cfg.transformer_depth,
            # diffusers' historical name: this list holds the number of heads per level
            "attention_head_dim": [cfg.heads_for(w)[0] for w in widths],
            "use_linear_projection": False, "upcast_attention": False}


def scheduler_config(cfg: DiffusionConfig) -> dict[str, Any]:
    """DDIMScheduler stepping as the reference's DDIM: +1 shifted uniform steps, ending at alpha_bar[t_0]."""
    return {**_head("DDIMScheduler"), "num_train_timesteps": cfg.timesteps, "beta_start": cfg.linear_start,
            "beta_end": cfg.linear_end, "beta_schedule": SCHEDULES[cfg.schedule], "clip_sample": False,
            "set_alpha_to_one": False, "steps_offset": 1, "timestep_spacing": "leading",
            "prediction_type": PREDICTIONS[cfg.parameterization]}


def ldmbert_config(cfg: ConditioningConfig) -> dict[str, Any]:
    """LDMBertConfig of our text transformer (the reference's BERTEmbedder as diffusers holds it)."""
    return {"architectures": ["LDMBertModel"], "model_type": "ldmbert", "vocab_size": cfg.vocab_size,
            "max_position_embeddings": cfg.max_seq_len, "encoder_layers": cfg.depth,
            "encoder_ffn_dim": cfg.mlp_mult * cfg.dim, "encoder_attention_heads": cfg.heads, "head_dim": cfg.dim_head,
            "encoder_layerdrop": 0.0, "activation_function": "gelu", "d_model": cfg.dim, "dropout": 0.0,
            "attention_dropout": 0.0, "activation_dropout": 0.0, "init_std": 0.02, "classifier_dropout": 0.0,
            "scale_embedding": False, "use_cache": True, "pad_token_id": 0}


def check_config(theirs: Mapping[str, Any], expected: Mapping[str, Any], source: str,
                 skip: tuple[str, ...] = ("_diffusers_version", "sample_size", "scaling_factor", "dropout")) -> None:
    """Refuse a foreign config whose architecture differs from the preset's, naming the first key that does."""
    for key, value in expected.items():
        if key in skip or key not in theirs:
            continue
        got = theirs[key]
        same = list(got) == list(value) if isinstance(value, list) and isinstance(got, (list, tuple)) else got == value
        if not same:
            raise InvalidInput(f"{source}: {key} is {got!r}, the preset needs {value!r}; is --preset right?")
