"""Typed, strict loading of params.yaml: one frozen section model per stage.

Every stage calls `load_params(path)` before it does any work, so a typo, a wrong
type or an out-of-range value stops the run with one line naming the key, the
value and what is allowed. `ldm params check` runs the same validation alone.
Importing this package imports no torch: the library's config dataclasses it
mirrors are plain Python.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError, model_validator

from stages.params.base import ParamsError, Section, dataclass_section, describe, to_config
from stages.params.data import DataParams, DegradeParams, DownloadParams
from stages.params.models import (
    INHERITS,
    AutoencoderParams,
    CacheLatentsParams,
    EvaluateParams,
    SamplingParams,
    TrainAutoencoderParams,
    TrainLDMParams,
    TrainSRParams,
    inherit,
)
from stages.params.storage import OrchestrateParams, StorageParams

__all__ = ["AutoencoderParams", "CacheLatentsParams", "DataParams", "DegradeParams", "DownloadParams", "EvaluateParams",
           "OrchestrateParams", "Params", "ParamsError", "SamplingParams", "Section", "StorageParams",
           "TrainAutoencoderParams", "TrainLDMParams", "TrainSRParams", "dataclass_section", "load_params",
           "lineage", "params_hash", "parse_params", "to_config"]


class Params(Section):
    """All of params.yaml."""

    data: DataParams = DataParams()
    download: DownloadParams = DownloadParams()
    degrade: DegradeParams = DegradeParams()
    autoencoder: AutoencoderParams = AutoencoderParams()
    train_autoencoder: TrainAutoencoderParams = TrainAutoencoderParams()
    cache_latents: CacheLatentsParams = CacheLatentsParams()
    train_ldm: TrainLDMParams = TrainLDMParams()
    train_sr: TrainSRParams = TrainSRParams()
    evaluate: EvaluateParams = EvaluateParams()
    storage: StorageParams = StorageParams()
    orchestrate: OrchestrateParams = OrchestrateParams()

    @model_validator(mode="before")
    @classmethod
    def _sr_inherits(cls, raw: Any) -> Any:
        """train_sr states only what differs from train_ldm (see TrainSRParams)."""
        for child, parent in INHERITS.items():
            if isinstance(raw, dict) and parent in raw:
                raw = {**raw, child: inherit(raw[parent], raw.get(child) or {})}
        return raw


def parse_params(raw: Any, source: str = "params.yaml") -> Params:
    """Validate an already-parsed mapping; raise ParamsError listing every problem."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: the top level must be a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{source}: {describe(err, Params)}" for err in exc.errors()]
        raise ParamsError("\n".join(lines)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path}: no such file; run from the project root or pass --params") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    return parse_params(raw, str(path))


def params_hash(section: BaseModel) -> str:
    """sha256 of a section's canonical JSON: the lineage key of a stage's settings."""
    text = json.dumps(section.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def lineage(sections: dict[str, BaseModel], inputs: dict[str, str]) -> dict:
    """The lineage block of a report: each params section with its hash, input hashes, code version."""
    from ldm.reports import code_version

    return {
        "params": {name: section.model_dump(mode="json") for name, section in sections.items()},
        "params_sha256": {name: params_hash(section) for name, section in sections.items()},
        "inputs_sha256": dict(sorted(inputs.items())),
        "code_version": code_version(),
    }
