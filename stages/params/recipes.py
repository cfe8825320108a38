"""Preset recipes under params.yaml: what a training section takes from its preset, and where each value came from.

A training section's values come, in order of precedence, from params.yaml (or a
`--set`), from its preset's recipe (`ldm.*.recipes`, plus an LDM preset's own
research settings under `model`), or from the section's defaults. `train_sr`, `train_inpaint`, `train_semantic`
and `train_layout` also take the loop settings of `train_ldm` they do not set (INHERITS). `resolve` does this
on the raw mapping before validation and says where every value it filled came from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ldm.autoencoder.recipes import recipe as autoencoder_recipe
from ldm.latent_diffusion.presets import preset_config
from ldm.latent_diffusion.recipes import recipe as ldm_recipe
from ldm.latent_diffusion.settings import ModelSettings
from ldm.recipes import Recipe
from stages.params.models import PlacementParams, TrainingLoop

FROM_PARAMS = "params.yaml"
FROM_DEFAULT = "default"
# section -> the section whose loop settings it takes (dvc.yaml lists both)
INHERITS = {"train_sr": "train_ldm", "train_inpaint": "train_ldm", "train_semantic": "train_ldm", "train_layout": "train_ldm"}
# TrainingLoop's fields and where the processes run (ldm.placement.Placement)
INHERITED_KEYS = (*TrainingLoop.model_fields, *PlacementParams.model_fields)


def _ldm_overlay(name: str) -> dict[str, Any]:
    return {**ldm_recipe(name).section(), "model": ModelSettings.of(preset_config(name)).to_dict()}


def _autoencoder_overlay(name: str) -> dict[str, Any]:
    return autoencoder_recipe(name).section()


# training section -> (section, key) naming its preset, the overlay of that preset, and the default preset
RECIPE_OF: dict[str, tuple[tuple[str, str], Callable[[str], dict[str, Any]], str]] = {
    "train_autoencoder": (("autoencoder", "preset"), _autoencoder_overlay, "kl-f4-tiny"),
    "train_ldm": (("train_ldm", "preset"), _ldm_overlay, "tiny-cond"),
    "train_sr": (("train_sr", "preset"), _ldm_overlay, "tiny-sr"),
    "train_inpaint": (("train_inpaint", "preset"), _ldm_overlay, "tiny-inpaint"),
    "train_semantic": (("train_semantic", "preset"), _ldm_overlay, "tiny-semantic"),
    "train_layout": (("train_layout", "preset"), _ldm_overlay, "tiny-layout"),
}


def preset_recipe(section: str, raw: dict[str, Any]) -> tuple[str, Recipe] | None:
    """(preset name, recipe) of a training section given raw params; None when the preset is unknown."""
    (where, key), _, default = RECIPE_OF[section]
    name = _get(raw, where).get(key, default)
    lookup = autoencoder_recipe if section == "train_autoencoder" else ldm_recipe
    try:
        return name, lookup(name)
    except (ValueError, TypeError):
        return None


def resolve(raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Raw params with inheritance and preset recipes filled in, and the origin of each filled or set leaf key."""
    raw = dict(raw)
    origins = {key: FROM_PARAMS for key in _leaves(raw)}
    for child, parent in INHERITS.items():
        own = _get(raw, child)
        taken = {k: v for k, v in _get(raw, parent).items() if k in INHERITED_KEYS and k not in own}
        raw[child] = _merge(taken, own)
        origins.update({f"{child}.{leaf}": f"{FROM_PARAMS} ({parent})" for leaf in _leaves(taken)})
    for section, ((where, key), overlay, default) in RECIPE_OF.items():
        name = _get(raw, where).get(key, default)
        try:
            filled = overlay(name)
        except (ValueError, TypeError):
            continue  # an unknown preset: validation names it
        own = _get(raw, section)
        raw[section] = _merge(filled, own)
        for leaf in _leaves(filled, section):
            origins.setdefault(leaf, f"preset {name}")
    return raw, origins


def _get(raw: dict[str, Any], section: str) -> dict[str, Any]:
    value = raw.get(section)
    return value if isinstance(value, dict) else {}


def _merge(base: dict[str, Any], top: Any) -> Any:
    """`top` over `base`, nested mappings merged key by key; a non-mapping `top` is left for validation."""
    if not isinstance(top, dict):
        return top
    out = dict(base)
    for key, value in top.items():
        out[key] = _merge(out[key], value) if isinstance(out.get(key), dict) and isinstance(value, dict) else value
    return out


def _leaves(mapping: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of the non-mapping values of a nested mapping."""
    out = []
    for key, value in mapping.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        out += _leaves(value, path) if isinstance(value, dict) and value else [path]
    return out
