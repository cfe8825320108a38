"""Typed, strict loading of params.yaml: one frozen section model per stage.

Every stage calls `load_params(path)` before it does any work, so a typo, a wrong
type or an out-of-range value stops the run with one line naming the key, the
value and what is allowed. `ldm params check` runs the same validation alone.
Importing this package imports no torch: the library's config dataclasses it
mirrors are plain Python.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError, model_validator

from ldm.autoencoder.presets import preset_config as autoencoder_config
from ldm.latent_diffusion.config import LDMConfig
from ldm.latent_diffusion.presets import preset_config
from ldm.latent_diffusion.settings import paired_config
from stages.params.base import ParamsError, Section, dataclass_section, describe, to_config
from stages.params.data import ADDRESS_ENV, ClusterParams, DataParams, DegradeParams, DownloadParams, MasksParams
from stages.params.data import LabelMapsParams
from stages.params.checks import check_consistency
from stages.params.evaluation import EvaluateInpaintParams
from stages.params.models import (
    AutoencoderParams,
    CacheLatentsParams,
    EvaluateLayoutParams,
    EvaluateParams,
    EvaluateSemanticParams,
    SamplingParams,
    TrainAutoencoderParams,
    TrainInpaintParams,
    TrainLayoutParams,
    TrainLDMParams,
    TrainSemanticParams,
    TrainSRParams,
)
from stages.params.recipes import preset_recipe, resolve
from stages.params.storage import OrchestrateParams, StorageParams

__all__ = ["ADDRESS_ENV", "AutoencoderParams", "CacheLatentsParams", "ClusterParams", "DataParams", "DegradeParams", "DownloadParams", "EvaluateParams",
           "EvaluateInpaintParams", "EvaluateLayoutParams", "EvaluateSemanticParams",
           "MasksParams", "OrchestrateParams", "Params", "ParamsError", "SamplingParams", "Section", "StorageParams",
           "TrainAutoencoderParams", "TrainInpaintParams", "TrainLayoutParams", "TrainLDMParams", "TrainSRParams", "TrainSemanticParams",
           "dataclass_section", "load_params",
           "lineage", "params_hash", "parse_params", "read_raw", "recipe_lineage", "to_config"]


class Params(Section):
    """All of params.yaml."""

    data: DataParams = DataParams()
    download: DownloadParams = DownloadParams()
    degrade: DegradeParams = DegradeParams()
    masks: MasksParams = MasksParams()
    label_maps: LabelMapsParams = LabelMapsParams()
    autoencoder: AutoencoderParams = AutoencoderParams()
    train_autoencoder: TrainAutoencoderParams = TrainAutoencoderParams()
    cache_latents: CacheLatentsParams = CacheLatentsParams()
    train_ldm: TrainLDMParams = TrainLDMParams()
    train_sr: TrainSRParams = TrainSRParams()
    train_inpaint: TrainInpaintParams = TrainInpaintParams()
    train_semantic: TrainSemanticParams = TrainSemanticParams()
    train_layout: TrainLayoutParams = TrainLayoutParams()
    evaluate: EvaluateParams = EvaluateParams()
    evaluate_inpaint: EvaluateInpaintParams = EvaluateInpaintParams()
    evaluate_semantic: EvaluateSemanticParams = EvaluateSemanticParams()
    evaluate_layout: EvaluateLayoutParams = EvaluateLayoutParams()
    storage: StorageParams = StorageParams()
    orchestrate: OrchestrateParams = OrchestrateParams()
    cluster: ClusterParams = ClusterParams()

    @model_validator(mode="before")
    @classmethod
    def _recipes(cls, raw: Any) -> Any:
        """Inherited loop settings and preset recipes under what params.yaml sets (stages.params.recipes)."""
        return resolve(raw)[0] if isinstance(raw, dict) else raw

    def ldm_config(self, section: str) -> LDMConfig:
        """The LDM a training section builds: its preset with the section's research settings and classes,
        fitted to the pipeline's autoencoder (ValueError naming the setting to change when it cannot be)."""
        p: TrainLDMParams = getattr(self, section)
        config = p.model_settings().apply_to(preset_config(p.preset))
        if p.n_classes and config.conditioning.kind in ("class", "semantic", "layout"):
            config = dataclasses.replace(config, conditioning=dataclasses.replace(config.conditioning, n_classes=p.n_classes))
        name = self.autoencoder.preset
        return paired_config(config, name, autoencoder_config(name), self.data.resolution)


def parse_params(raw: Any, source: str = "params.yaml") -> Params:
    """Validate an already-parsed mapping; raise ParamsError listing every problem."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: the top level must be a mapping of sections, got {type(raw).__name__}")
    try:
        params = Params.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{source}: {describe(err, Params)}" for err in exc.errors()]
        raise ParamsError("\n".join(lines)) from None
    problems = check_consistency(params)  # what a later stage would refuse, refused before any stage runs
    if problems:
        raise ParamsError("\n".join(f"{source}: {line}" for line in problems))
    return params


def read_raw(path: str | Path = "params.yaml") -> dict[str, Any]:
    """params.yaml as a plain mapping, before validation."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path}: no such file; run from the project root or pass --params") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    if raw is not None and not isinstance(raw, dict):
        raise ParamsError(f"{path}: the top level must be a mapping of sections, got {type(raw).__name__}")
    return raw or {}


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml; $LDM_CLUSTER_ADDRESS, when set, is the cluster.address in force."""
    raw = read_raw(path)
    cluster = raw.get("cluster") or {}
    if os.environ.get(ADDRESS_ENV) and isinstance(cluster, dict):  # where tasks run, never what they write: not for DVC
        raw = {**raw, "cluster": {**cluster, "address": os.environ[ADDRESS_ENV]}}
    return parse_params(raw, str(path))


def params_hash(section: Section) -> str:
    """sha256 of a section's canonical JSON (runtime keys left out): the lineage key of a stage's settings."""
    text = json.dumps(section.recorded(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def lineage(sections: dict[str, Section], inputs: dict[str, str], recipe: dict | None = None) -> dict:
    """The lineage block of a report: each params section (resolved: the recipe included) with its hash, input
    hashes, code version, and for a training stage where its recipe came from (`recipe_lineage`)."""
    from ldm.reports import code_version

    block = {
        "params": {name: section.recorded() for name, section in sections.items()},
        "params_sha256": {name: params_hash(section) for name, section in sections.items()},
        "inputs_sha256": dict(sorted(inputs.items())),
        "code_version": code_version(),
    }
    return block if recipe is None else {**block, "recipe": recipe}


def recipe_lineage(params: Params, section: str, effective_lr: float) -> dict:
    """Which preset's recipe a training section started from, its source, and the learning rate it ran at."""
    found = preset_recipe(section, params.model_dump(mode="json"))
    preset, source = (found[0], found[1].source) if found else ("", "")
    return {"preset": preset, "source": source, "effective_lr": effective_lr}
