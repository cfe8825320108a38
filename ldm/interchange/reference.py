"""Import the reference's checkpoints into a MODEL_DIR and export a MODEL_DIR as one.

A first-stage checkpoint (models/first_stage_models/<name>/model.ckpt) becomes
`autoencoder/`; an LDM checkpoint (models/ldm/<name>/model.ckpt) becomes
`autoencoder/` and `ldm/` (`ldm_sr/` for super-resolution). The UNet comes from
its EMA copy when the checkpoint has one. The schedule: `--config` (the
reference's config.yaml), else the checkpoint's `betas` (start, end and length
read off them and checked against every entry), else the preset. The scale
factor: `--scale-factor`, else the checkpoint's `scale_factor` buffer
(scale_by_std models), else `--config`, else the reference's default 1.0.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ldm.data.shards import AtomicFolder
from ldm.diffusion.config import DiffusionConfig
from ldm.errors import InvalidInput
from ldm.interchange import reference_keys as R
from ldm.interchange.bundle import (ImportReport, ModelDir, Target, autoencoder_keys, ldm_keys, matching_first_stages,
                                    read_model_dir, with_schedule, write_model_dir)
from ldm.interchange.ckpt_reader import read_state_dict
from ldm.interchange.layout import autoencoder_blocks, conditioner_blocks, unet_blocks
from ldm.interchange.mapping import export_state, import_state, plan
from ldm.interchange.reference_config import first_stage_yaml, ldm_yaml, schedule_overrides
from ldm.latent_diffusion.config import LDMConfig

log = logging.getLogger(__name__)
CHECKPOINT, CONFIG = "model.ckpt", "config.yaml"
SCHEDULE_BUFFERS = ("betas", "alphas_cumprod", "alphas_cumprod_prev")


def _ema_source(state: dict[str, Tensor], src: Path) -> dict[str, Tensor] | None:
    """The UNet's keys filled from the EMA copy, or None without one; an EMA key no UNet key explains is an error."""
    ema = {k for k in state if k.startswith(R.EMA) and k not in R.LDM_UNUSED}
    if not ema:
        return None
    unet = {R.ema_name(k): k for k in state if k.startswith(R.UNET)}
    stray = sorted(ema - set(unet))
    if stray:
        raise InvalidInput(f"{src}: EMA key {stray[0]!r} matches no key under {R.UNET}; is the checkpoint whole?")
    return {unet[name]: state[name] for name in ema}


def _decimal(value: Tensor) -> float:
    """A float32 scalar as the shortest decimal that reads back to it, as a config file writes it (0.0015)."""
    return float(np.format_float_positional(np.float32(value.item())))


def _follows(betas: Tensor, cfg: DiffusionConfig) -> bool:
    """Whether a float32 `betas` buffer is the schedule `cfg` describes."""
    ours = cfg.make_schedule().betas
    return betas.shape == ours.shape and torch.allclose(betas.double(), ours, rtol=1e-5, atol=1e-9)


def _schedule(state: dict[str, Tensor], cfg: DiffusionConfig, config: dict[str, Any] | None,
              src: Path) -> tuple[dict[str, Any], str]:
    """DiffusionConfig overrides and where they came from; a `betas` buffer that disagrees is an error."""
    overrides, origin = {}, "preset"
    if config is not None:
        overrides, origin = schedule_overrides(config), "--config"
    elif "betas" in state:
        betas, origin = state["betas"], "betas in the checkpoint"
        if not _follows(betas, cfg):  # the shortest decimals of the float32 ends, as a config file writes them
            ends = (_decimal(betas[0]), _decimal(betas[-1]))
            overrides = {"timesteps": len(betas), **dict(zip(("linear_start", "linear_end"), ends))}
    if "betas" in state and not _follows(state["betas"], DiffusionConfig(**{**cfg.to_dict(), **overrides})):
        raise InvalidInput(f"{src}: its betas do not follow a {cfg.schedule} schedule from {overrides or 'the preset'};"
                           " pass --config with the model's config.yaml")
    return overrides, origin


def _scale_factor(state: dict[str, Tensor], config: dict[str, Any] | None,
                  given: float | None) -> tuple[float, str]:
    if given is not None:
        return given, "--scale-factor"
    if "scale_factor" in state:
        return _decimal(state["scale_factor"]), "scale_factor in the checkpoint"
    if config is not None and "scale_factor" in config:
        return float(config["scale_factor"]), "--config"
    return 1.0, "the reference's default (1.0)"


def _check_top_level(state: dict[str, Tensor], src: Path) -> None:
    prefixes = (R.UNET, R.FIRST_STAGE, R.COND_STAGE, R.EMA)
    stray = sorted(k for k in state if not k.startswith(prefixes) and k not in R.LDM_UNUSED)
    if stray:
        raise InvalidInput(f"{src}: unknown key {stray[0]!r} in an LDM checkpoint; is --preset right?")


def import_reference(src: Path, target: Target, out: Path, *, config: dict[str, Any] | None = None,
                     scale_factor: float | None = None) -> ImportReport:
    """A reference checkpoint -> `out`/autoencoder (+ ldm or ldm_sr); the report also goes into both cards.

    `config`: `model.params` of the reference's config.yaml, when given."""
    preset = target.ldm_preset or target.autoencoder_preset
    state = read_state_dict(src)
    cfg = target.autoencoder
    is_ldm = any(k.startswith(R.UNET) for k in state)
    if is_ldm != (target.ldm is not None):
        found = f"an LDM checkpoint (keys under {R.UNET})" if is_ldm else f"a first stage (no {R.UNET} keys)"
        wanted = "an LDM preset (its first stage comes with it)" if is_ldm else "a first-stage preset"
        raise InvalidInput(f"{src}: is {found}, but --preset {preset} is not; pass {wanted}")
    if target.ldm is None:
        entries = plan(autoencoder_blocks(cfg), R.AUTOENCODER, autoencoder_keys(cfg))
        ae_state = import_state(state, entries, R.AUTOENCODER, str(src))
        report = ImportReport("reference", str(src), preset, tensors=len(ae_state))
        write_model_dir(out, target, ae_state, report)
        return report
    _check_top_level(state, src)
    entries = plan(autoencoder_blocks(cfg), R.AUTOENCODER, autoencoder_keys(cfg), prefix=R.FIRST_STAGE)
    try:
        ae_state = import_state(state, entries, R.AUTOENCODER, str(src), prefix=R.FIRST_STAGE)
    except InvalidInput as exc:
        fits = matching_first_stages(state, R.AUTOENCODER, R.FIRST_STAGE)
        if not fits:
            raise
        raise InvalidInput(f"{src}: its first stage ({R.FIRST_STAGE}*) is not {target.autoencoder_preset}, the"
                           f" first stage of --preset {preset}, but fits {' or '.join(fits)}; pass --first-stage"
                           f" {fits[0]}") from exc
    ldm_state, ema = _import_ldm(state, target.ldm, src)
    overrides, schedule_from = _schedule(state, target.ldm.diffusion, config, src)
    factor, factor_from = _scale_factor(state, config, scale_factor)
    report = ImportReport("reference", str(src), preset, "ema" if ema else "raw", factor, factor_from, schedule_from,
                          len(ae_state) + len(ldm_state))
    tokenizer = None
    if target.ldm.conditioning.kind == "text":
        from ldm.conditioning.tokenizer import load_bert_tokenizer

        tokenizer = load_bert_tokenizer()  # the reference's BERTEmbedder tokenizes with bert-base-uncased
    target = Target(cfg, target.autoencoder_preset, with_schedule(target.ldm, factor, **overrides), preset)
    write_model_dir(out, target, ae_state, report, ldm_state, tokenizer)
    return report


def _import_ldm(state: dict[str, Tensor], cfg: LDMConfig, src: Path) -> tuple[dict[str, Tensor], bool]:
    """Our UNet and tau_theta tensors from an LDM checkpoint, and whether the UNet's came from its EMA copy."""
    ema = _ema_source(state, src)
    if ema is not None:
        log.info("%s: taking the UNet's EMA weights (%s*)", src, R.EMA)
    unet = plan(unet_blocks(cfg.unet), R.UNET_LAYOUT, ldm_keys(cfg, "unet."), prefix=R.UNET)
    out = import_state(ema or state, unet, R.UNET_LAYOUT, str(src), prefix=R.UNET)
    cond = plan(conditioner_blocks(cfg.conditioning), R.CONDITIONER, ldm_keys(cfg, "cond_model."), prefix=R.COND_STAGE)
    return {**out, **import_state(state, cond, R.CONDITIONER, str(src), prefix=R.COND_STAGE)}, ema is not None


def reference_state(model: ModelDir) -> dict[str, Tensor]:
    """A MODEL_DIR's tensors under the reference's names (an LDM's with its schedule and scale factor)."""
    cfg = model.autoencoder_card.model
    if model.ldm is None:
        return export_state(model.autoencoder_state(), plan(autoencoder_blocks(cfg), R.AUTOENCODER,
                                                            model.autoencoder_state()))
    ldm = model.ldm.model.config
    state = export_state(model.autoencoder_state(), plan(autoencoder_blocks(cfg), R.AUTOENCODER,
                                                         model.autoencoder_state(), prefix=R.FIRST_STAGE))
    unet, cond = model.state("unet."), model.state("cond_model.")
    unet_state = export_state(unet, plan(unet_blocks(ldm.unet), R.UNET_LAYOUT, unet, prefix=R.UNET))
    state.update(unet_state)
    if model.ldm.card.weights == "ema":  # the reference samples from its EMA copy (use_ema): the same tensors
        state.update({R.ema_name(k): v for k, v in unet_state.items()})
        state.update({"model_ema.decay": torch.tensor(R.EMA_DECAY), "model_ema.num_updates": torch.tensor(0)})
    state.update(export_state(cond, plan(conditioner_blocks(ldm.conditioning), R.CONDITIONER, cond,
                                         prefix=R.COND_STAGE)))
    schedule = model.ldm.model.schedule
    buffers = (schedule.betas, schedule.alpha_bar, schedule.alpha_bar_prev)
    state.update({name: t.float() for name, t in zip(SCHEDULE_BUFFERS, buffers)})
    state["scale_factor"] = torch.tensor(ldm.scale_factor)
    return state


def export_reference(model_dir: Path, out: Path, dump: Callable[[dict[str, Any]], str],
                     component: str | None = None) -> Path:
    """`out`/model.ckpt (a Lightning-style {"state_dict": ...} of tensors only) and `out`/config.yaml, its text
    from `dump` (a YAML writer)."""
    model = read_model_dir(model_dir, component)
    state = reference_state(model)
    first_stage = model.autoencoder_card.model
    doc = ({"model": first_stage_yaml(first_stage)} if model.ldm is None
           else ldm_yaml(model.ldm.model.config, first_stage, model.ldm.card.weights == "ema"))
    with AtomicFolder(out) as staging:  # `out` appears only when both files are complete
        torch.save({"state_dict": state}, staging / CHECKPOINT)
        (staging / CONFIG).write_text(dump(doc))
    return out / CHECKPOINT
