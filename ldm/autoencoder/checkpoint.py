"""A trained autoencoder from its folder: `model.safetensors` + `config.json` (as stage train_autoencoder writes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_file

from ldm.autoencoder.config import AutoencoderConfig
from ldm.autoencoder.model import Autoencoder


def load_autoencoder(folder: str | Path) -> tuple[Autoencoder, dict[str, Any]]:
    """(model in eval mode, its config.json) from `folder`; FileNotFoundError naming what is missing."""
    folder = Path(folder)
    weights, config_file = folder / "model.safetensors", folder / "config.json"
    for path in (weights, config_file):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file; train the autoencoder first (dvc repro train_autoencoder)")
    config = json.loads(config_file.read_text())
    if "model" not in config:
        raise ValueError(f"{config_file}: has no 'model' section; was it written by stage train_autoencoder?")
    model = Autoencoder(AutoencoderConfig.from_dict(config["model"]))
    model.load_state_dict(load_file(str(weights)), strict=True)
    return model.eval().requires_grad_(False), config
