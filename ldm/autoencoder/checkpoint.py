"""A trained autoencoder's folder: `model.safetensors` + `config.json` (the card), written and read here only."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from ldm.autoencoder.config import AutoencoderConfig
from ldm.autoencoder.model import Autoencoder
from ldm.config import Config
from ldm.data.shards import AtomicFolder, sha256_file
from ldm.errors import InputNotFound, InvalidInput
from ldm.model_dir import AUTOENCODER, WEIGHTS, model_folder
from ldm.reports import write_json

CARD = "config.json"


@dataclass(frozen=True)
class AutoencoderCard(Config):
    """config.json of an autoencoder folder: the model config and where the weights came from."""

    section = "autoencoder config.json"

    model: AutoencoderConfig
    preset: str = ""
    resolution: int = 0  # training crop side in pixels; 0: unknown (an imported model)
    data_sha256: str = ""
    lineage: dict[str, Any] = field(default_factory=dict)

    @property
    def downsample_factor(self) -> int:
        """f: image side / latent side."""
        return self.model.downsample_factor


def save_autoencoder(folder: str | Path, model: Autoencoder, card: AutoencoderCard) -> None:
    """Write weights and card into `folder` atomically (the folder appears only when complete)."""
    with AtomicFolder(folder) as staging:
        tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(tensors, str(staging / WEIGHTS), metadata={"preset": card.preset})
        write_json(staging / CARD, card.to_dict())


def read_card(folder: str | Path) -> AutoencoderCard:
    """The card of an autoencoder folder, without its weights; errors name the missing or wrong file."""
    folder = Path(folder)
    for path in (folder / WEIGHTS, folder / CARD):
        if not path.is_file():
            raise InputNotFound(f"{path}: no such file; train the autoencoder first (dvc repro train_autoencoder)")
    data = json.loads((folder / CARD).read_text())
    if "model" not in data:
        raise InvalidInput(f"{folder / CARD}: has no 'model' section; was it written by stage train_autoencoder?")
    try:
        return AutoencoderCard.from_dict(data)
    except ValueError as exc:
        raise InvalidInput(f"{folder / CARD}: {exc}") from None


def load_autoencoder(folder: str | Path) -> tuple[Autoencoder, AutoencoderCard]:
    """(model in eval mode, its card) from `folder`; errors name the missing or wrong file."""
    card = read_card(folder)
    model = Autoencoder(card.model)
    model.load_state_dict(load_file(str(Path(folder) / WEIGHTS)), strict=True)
    return model.eval().requires_grad_(False), card


def autoencoder_sha256(folder: str | Path) -> str:
    """One hash for a trained autoencoder: its weights and its card."""
    folder = Path(folder)
    return hashlib.sha256("".join(sha256_file(folder / name) for name in (WEIGHTS, CARD)).encode()).hexdigest()


def init_autoencoder(path: Path, config: AutoencoderConfig, key: str) -> tuple[Autoencoder, str]:
    """The autoencoder to train (`init_from`): the weights of the one under `path` (a MODEL_DIR or an autoencoder
    folder), whose config must be `config` (a difference is named); and their hash, for the lineage."""
    folder = model_folder(Path(path), AUTOENCODER, key)
    model, card = load_autoencoder(folder)
    differing = [f.name for f in dataclasses.fields(config) if getattr(config, f.name) != getattr(card.model, f.name)]
    if differing:
        raise InvalidInput(f"{key} {folder}: its autoencoder differs from autoencoder.preset in"
                           f" {', '.join(f'{n} ({getattr(card.model, n)!r})' for n in differing)}; set the preset it"
                           f" was built as{f' ({card.preset})' if card.preset else ''}")
    logging.getLogger(__name__).info("starting from the weights of %s", folder)
    return model.train().requires_grad_(True), autoencoder_sha256(folder)
