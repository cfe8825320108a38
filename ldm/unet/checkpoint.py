"""A trained LDM from its folder: `model.safetensors` (weights, config, scale factor), `config.json`, tokenizer."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import load_file

from ldm.conditioning import load_tokenizer
from ldm.unet.ldm import LatentDiffusionModel, from_safetensors_payload


@dataclass
class LoadedLDM:
    """A model in eval mode with what sampling needs beside it."""

    model: LatentDiffusionModel
    scale_factor: float
    config: dict[str, Any]  # config.json as the training stage wrote it
    tokenizer: Any = None  # text models only


def load_ldm(folder: str | Path) -> LoadedLDM:
    """Load a model folder written by stage train_ldm / train_sr; FileNotFoundError naming what is missing."""
    folder = Path(folder)
    weights, config_file = folder / "model.safetensors", folder / "config.json"
    for path in (weights, config_file):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file; train the model first (dvc repro train_ldm / train_sr)"
                                    " or pull a release with `ldm pull`")
    with safe_open(str(weights), "pt") as handle:
        metadata = handle.metadata() or {}
    if "scale_factor" not in metadata:
        raise ValueError(f"{weights}: has no scale_factor in its metadata; was it written by stage train_ldm?")
    model = from_safetensors_payload(load_file(str(weights)), metadata).eval().requires_grad_(False)
    tokenizer = load_tokenizer(folder / "tokenizer") if model.config.conditioning.kind == "text" else None
    return LoadedLDM(model, float(metadata["scale_factor"]), json.loads(config_file.read_text()), tokenizer)
