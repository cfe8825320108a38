"""The reference's `config.yaml` beside a `model.ckpt`, as a mapping: read for the schedule and scale factor,
built on export.

The reference builds a model from this file (`model.target` + `model.params`),
so an exported checkpoint comes with one; its keys are the reference's names
(CompVis latent-diffusion `configs/latent-diffusion/*.yaml`). The YAML text
itself is read and written by the caller (the `ldm` command).
"""

from __future__ import annotations

from typing import Any

from ldm.autoencoder.config import AutoencoderConfig
from ldm.latent_diffusion.config import LDMConfig

REFERENCE_RESOLUTION = 256  # the reference's first-stage configs state attention at pixel sizes of a 256 input
SCHEDULE_KEYS = {"linear_start": "linear_start", "linear_end": "linear_end", "timesteps": "timesteps",
                 "beta_schedule": "schedule", "parameterization": "parameterization"}  # theirs -> DiffusionConfig


def schedule_overrides(params: dict[str, Any]) -> dict[str, Any]:
    """DiffusionConfig fields set by a reference config's model.params."""
    return {ours: params[theirs] for theirs, ours in SCHEDULE_KEYS.items() if theirs in params}


def first_stage_yaml(cfg: AutoencoderConfig) -> dict[str, Any]:
    """`first_stage_config` of the reference: VQModelInterface or AutoencoderKL with its ddconfig."""
    ddconfig = {
        "double_z": cfg.double_z, "z_channels": cfg.z_channels, "resolution": REFERENCE_RESOLUTION,
        "in_channels": cfg.in_channels, "out_ch": cfg.out_channels, "ch": cfg.ch, "ch_mult": list(cfg.ch_mult),
        "num_res_blocks": cfg.num_res_blocks, "dropout": cfg.dropout,
        "attn_resolutions": [REFERENCE_RESOLUTION // 2**level for level in cfg.attn_levels],
    }
    if not cfg.mid_attn:
        ddconfig["attn_type"] = "none"
    params: dict[str, Any] = {"embed_dim": cfg.embed_dim, "ddconfig": ddconfig,
                              "lossconfig": {"target": "torch.nn.Identity"}}
    if cfg.kind == "vq":
        params["n_embed"] = cfg.n_embed
        return {"target": "ldm.models.autoencoder.VQModelInterface", "params": params}
    return {"target": "ldm.models.autoencoder.AutoencoderKL", "params": params}


def _cond_stage(cfg: LDMConfig) -> tuple[Any, str, str | None]:
    """(cond_stage_config, cond_stage_key, conditioning_key)."""
    c = cfg.conditioning
    if c.kind == "class":
        return ({"target": "ldm.modules.encoders.modules.ClassEmbedder",
                 "params": {"embed_dim": c.embed_dim, "n_classes": c.n_classes + 1}}, "class_label", "crossattn")
    if c.kind == "text":
        return ({"target": "ldm.modules.encoders.modules.BERTEmbedder",
                 "params": {"n_embed": c.dim, "n_layer": c.depth, "vocab_size": c.vocab_size,
                            "max_seq_len": c.max_seq_len}}, "caption", "crossattn")
    if c.kind == "concat":
        return {"target": "torch.nn.Identity"}, "LR_image", "concat"
    return "__is_unconditional__", "image", None


def ldm_yaml(cfg: LDMConfig, first_stage: AutoencoderConfig, use_ema: bool) -> dict[str, Any]:
    """The reference's config.yaml for an LDM checkpoint written by `export_reference`."""
    u, d = cfg.unet, cfg.diffusion
    heads = {"num_head_channels": u.num_head_channels} if u.num_head_channels > 0 else {"num_heads": u.num_heads}
    unet = {"image_size": cfg.latent_size[0], "in_channels": u.in_channels, "out_channels": u.out_channels,
            "model_channels": u.model_channels, "attention_resolutions": list(u.attention_resolutions),
            "num_res_blocks": u.num_res_blocks, "channel_mult": list(u.channel_mult), **heads,
            "use_scale_shift_norm": u.use_scale_shift_norm, "resblock_updown": u.resblock_updown,
            "conv_resample": u.conv_resample, "dropout": u.dropout, "use_checkpoint": u.use_checkpoint}
    if u.attention == "cross":
        unet.update(use_spatial_transformer=True, transformer_depth=u.transformer_depth, context_dim=u.context_dim)
    cond_stage, cond_key, conditioning_key = _cond_stage(cfg)
    params = {"linear_start": d.linear_start, "linear_end": d.linear_end, "timesteps": d.timesteps,
              "beta_schedule": d.schedule, "parameterization": d.parameterization, "loss_type": d.loss_type,
              "scale_factor": cfg.scale_factor, "first_stage_key": "image", "cond_stage_key": cond_key,
              "image_size": cfg.latent_size[0], "channels": cfg.latent_channels,
              "conditioning_key": conditioning_key, "cond_stage_trainable": cfg.conditioning.kind in ("class", "text"),
              "monitor": "val/loss_simple_ema", "use_ema": use_ema,
              "unet_config": {"target": "ldm.modules.diffusionmodules.openaimodel.UNetModel", "params": unet},
              "first_stage_config": first_stage_yaml(first_stage), "cond_stage_config": cond_stage}
    return {"model": {"target": "ldm.models.diffusion.ddpm.LatentDiffusion", "params": params}}
