"""Settings of different sections that a later stage would refuse together, found before any stage runs.

Each check returns lines `key: what is wrong; what to do`; `parse_params` reports them
all at once, so `ldm params check` and the first stage that runs refuse the same things.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ldm.autoencoder.presets import preset_config as autoencoder_config
from ldm.masks.config import MASK, MASKED_IMAGE
from ldm.latent_diffusion.config import LDMConfig

if TYPE_CHECKING:
    from stages.params import Params

LDM_SECTIONS = ("train_ldm", "train_sr", "train_inpaint", "train_semantic", "train_layout")
INPAINT_KEYS = (MASKED_IMAGE, MASK)  # an inpainting model's concat condition


def check_consistency(params: Params) -> list[str]:
    """Every cross-section problem of `params`; empty when the stages can run together."""
    f = autoencoder_config(params.autoencoder.preset).downsample_factor
    if params.data.resolution % f:
        return [f"data.resolution: {params.data.resolution} is not a multiple of the downsampling factor f={f} of "
                f"autoencoder.preset {params.autoencoder.preset!r}; pick a multiple of {f} or a preset with a smaller f"]
    problems = _first_stage(params)
    for section in LDM_SECTIONS:
        problems += _ldm(params, section)
    return problems + _guidance(params) + _layout_classes(params) + _layout_sampling(params)


def _first_stage(params: Params) -> list[str]:
    """The pipeline trains one autoencoder: an LDM section may only pin that one."""
    chosen = params.autoencoder.preset
    return [f"{section}.first_stage: pins {getattr(params, section).first_stage!r} but the pipeline trains "
            f"autoencoder.preset {chosen!r} and caches its latents; set it to \"\" (follow the autoencoder) "
            f"or set autoencoder.preset: {getattr(params, section).first_stage}"
            for section in LDM_SECTIONS if getattr(params, section).first_stage not in ("", chosen)]


def _ldm(params: Params, section: str) -> list[str]:
    """The section's model fits the first stage and data, and its recipe fits the model."""
    p = getattr(params, section)
    try:
        config = params.ldm_config(section)
    except ValueError as exc:
        return [f"{section}.preset {p.preset!r}: {exc}"]
    problems, kind = [], config.conditioning.kind
    inpainting = kind == "concat" and tuple(config.conditioning.concat_keys) == INPAINT_KEYS
    if section == "train_sr" and (kind != "concat" or inpainting):
        problems.append(f"train_sr.preset {p.preset!r} is not a super-resolution model (conditioning {kind!r}); "
                        "pick one that concatenates the LR image, e.g. tiny-sr or bsr-sr-ldm4")
    if section == "train_inpaint" and not inpainting:
        problems.append(f"train_inpaint.preset {p.preset!r} is not an inpainting model (it must concatenate "
                        f"{' and '.join(INPAINT_KEYS)}); pick tiny-inpaint, inpaint-ldm4 or inpaint-ldm4-big")
    if section == "train_ldm" and kind == "concat":
        problems.append(f"train_ldm.preset {p.preset!r} needs a spatial condition per latent; train it as "
                        + ("train_inpaint.preset" if inpainting else "train_sr.preset"))
    problems += _semantic(params, section, config)
    if (section == "train_layout") != (kind == "layout"):
        problems.append(f"train_layout.preset {p.preset!r} is not a layout model (conditioning {kind!r}); pick one that "
                        "reads boxes, e.g. tiny-layout, layout-openimages-ldm4 or layout-coco-ldm8"
                        if section == "train_layout" else
                        f"{section}.preset {p.preset!r} reads boxes; train it as train_layout.preset")
    if p.recipe.p_uncond > 0 and kind not in ("class", "text"):
        problems.append(f"{section}.recipe.p_uncond: {p.recipe.p_uncond} drops a condition that a {kind!r} model "
                        "does not have; set it to 0.0")
    return problems


def _semantic(params: Params, section: str, config: LDMConfig) -> list[str]:
    """A semantic model trains as train_semantic, on label maps whose ids its classes cover."""
    kind, preset = config.conditioning.kind, getattr(params, section).preset
    if section == "train_semantic" and kind != "semantic":
        return [f"train_semantic.preset {preset!r} is not a semantic synthesis model (conditioning {kind!r}); "
                "pick one that takes label maps, e.g. tiny-semantic or semantic-ldm4"]
    if section != "train_semantic" and kind == "semantic":
        return [f"{section}.preset {preset!r} needs a label map per latent; train it as train_semantic.preset"]
    if section == "train_semantic":
        maps = params.label_maps.config().map_classes
        if maps > config.conditioning.n_classes:
            return [f"train_semantic.n_classes: the label maps hold {maps} classes (label_maps "
                    f"{params.label_maps.source!r}) but the model {config.conditioning.n_classes}; "
                    f"set train_semantic.n_classes: {maps}"]
    return []


def _layout_classes(params: Params) -> list[str]:
    """train_layout's classes cover the ids of boxes drawn around label-map regions (dataset boxes: the stage checks
    the cache, whose class table only the label_maps stage reads)."""
    maps = params.label_maps.config()
    try:
        classes = params.ldm_config("train_layout").conditioning.n_classes
    except ValueError:
        return []  # reported by _ldm
    if maps.boxes != "label_map" or classes >= maps.map_classes:
        return []
    return [f"train_layout.n_classes: the label_maps boxes carry class ids up to {maps.map_classes - 1}, but "
            f"train_layout.preset {params.train_layout.preset!r} has {classes} classes; set train_layout.n_classes: "
            f"{maps.map_classes}"]


def _layout_sampling(params: Params) -> list[str]:
    """A layout model has no null layout to guide against (nor did the paper guide it)."""
    scale = params.evaluate_layout.sampling.guidance_scale
    return [] if scale == 1.0 else [f"evaluate_layout.sampling.guidance_scale: {scale}, but layout models sample "
                                    "unguided (they learn no null layout); set it to 1.0"]


def _guidance(params: Params) -> list[str]:
    """Classifier-free guidance needs the unconditional model, learned by dropping the condition."""
    p, scale = params.train_ldm, params.evaluate.sampling.guidance_scale
    try:
        kind = params.ldm_config("train_ldm").conditioning.kind
    except ValueError:
        return []  # reported by _ldm
    if kind in ("class", "text") and scale != 1.0 and p.recipe.p_uncond == 0:
        return [f"evaluate.sampling.guidance_scale: {scale} needs an unconditional model, but "
                f"train_ldm.recipe.p_uncond is 0; set p_uncond (e.g. 0.1) or guidance_scale: 1.0"]
    return []
