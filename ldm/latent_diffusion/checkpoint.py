"""A trained LDM's folder: `model.safetensors` (weights), `config.json` (the card, with the model config and its
scale factor) and, for text models, `tokenizer/`. Written and read here only."""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from safetensors.torch import load_file, save_file

from ldm.config import Config
from ldm.data.label_maps import LabelMapFormat
from ldm.data.shards import AtomicFolder, sha256_file
from ldm.errors import InputNotFound, InvalidInput
from ldm.latent_diffusion.config import LDMConfig
from ldm.latent_diffusion.model import LatentDiffusionModel
from ldm.model_dir import WEIGHTS, model_folder
from ldm.reports import write_json

CARD, TOKENIZER = "config.json", "tokenizer"


@dataclass(frozen=True)
class LDMCard(Config):
    """config.json of an LDM folder: the model config (scale factor included) and where the weights came from."""

    section = "ldm config.json"

    model: LDMConfig
    preset: str = ""
    weights: Literal["ema", "raw"] = "raw"  # the EMA copy or the trained weights themselves
    autoencoder_sha256: str = ""  # the first stage the latents came from
    autoencoder_preset: str = ""
    sr_scale: int = 0  # super-resolution models: HR side / LR side (what `ldm upscale` multiplies by); 0 otherwise
    captions: tuple[str, ...] = ()  # text models: prompts for sampling, the training captions most frequent first
    label_format: LabelMapFormat | None = None  # semantic models: how a label map PNG's values become class ids
    lineage: dict[str, Any] = field(default_factory=dict)

    @property
    def scale_factor(self) -> float:
        """z_model = z_autoencoder * scale_factor (App. F)."""
        return self.model.scale_factor


@dataclass
class LoadedLDM:
    """A model in eval mode with what sampling needs beside it."""

    model: LatentDiffusionModel
    card: LDMCard
    tokenizer: Any = None  # text models only

    @property
    def scale_factor(self) -> float:
        """The latent scale the model was trained with."""
        return self.model.config.scale_factor


def save_ldm(folder: str | Path, model: LatentDiffusionModel, card: LDMCard, tokenizer: Any = None) -> None:
    """Write weights, card and tokenizer into `folder` atomically (the folder appears only when complete)."""
    if card.model != model.config:
        raise ValueError("save_ldm: the card's model config is not the model's own")
    from ldm.conditioning.tokenizer import save_tokenizer

    with AtomicFolder(folder) as staging:
        tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(tensors, str(staging / WEIGHTS), metadata={"preset": card.preset})
        write_json(staging / CARD, card.to_dict())
        if tokenizer is not None:
            save_tokenizer(tokenizer, staging / TOKENIZER)


def load_ldm(folder: str | Path) -> LoadedLDM:
    """Load a model folder written by `save_ldm` (stage train_ldm / train_sr, or `ldm pull`)."""
    folder = Path(folder)
    weights, card_file = folder / WEIGHTS, folder / CARD
    for path in (weights, card_file):
        if not path.is_file():
            raise InputNotFound(f"{path}: no such file; train the model first (dvc repro train_ldm / train_sr)"
                                " or pull a release with `ldm pull`")
    try:
        card = LDMCard.from_dict(json.loads(card_file.read_text()))
    except ValueError as exc:
        raise InvalidInput(f"{card_file}: {exc}; was it written by stage train_ldm?") from None
    model = LatentDiffusionModel(card.model)
    model.load_state_dict(load_file(str(weights)), strict=True)
    tokenizer = None
    if card.model.conditioning.kind == "text":
        from ldm.conditioning.tokenizer import load_tokenizer

        tokenizer = load_tokenizer(folder / TOKENIZER)
    return LoadedLDM(model.eval().requires_grad_(False), card, tokenizer)


def init_ldm(path: Path, name: str, config: LDMConfig, key: str) -> tuple[LatentDiffusionModel, str, Any]:
    """The LDM to train (`init_from`): `config` with the weights of the one under `path` (a MODEL_DIR, `name` ldm or
    ldm_sr, or a model folder); their hash; its tokenizer (a text model keeps the ids its weights learned).

    The UNet and the conditioning must be the same (dropout and gradient checkpointing may differ); the schedule,
    the scale factor and the latent size are the run's (the scale factor is measured again on its cache).
    """
    folder = model_folder(Path(path), name, key)
    loaded = load_ldm(folder)
    source, log = loaded.model.config, logging.getLogger(__name__)
    differing = [f"unet.{f.name}" for f in dataclasses.fields(config.unet) if f.name not in ("dropout", "use_checkpoint")
                 and getattr(config.unet, f.name) != getattr(source.unet, f.name)]
    differing += [f"conditioning.{f.name}" for f in dataclasses.fields(config.conditioning)
                  if getattr(config.conditioning, f.name) != getattr(source.conditioning, f.name)]
    if differing:
        raise InvalidInput(f"{key} {folder}: its model differs from the preset's in {', '.join(differing)}; set the"
                           f" preset it was built as{f' ({loaded.card.preset})' if loaded.card.preset else ''}")
    if source.scale_factor != config.scale_factor:
        log.warning("%s was trained on latents scaled by %g; this run scales by %g (measured on its cache)",
                    folder, source.scale_factor, config.scale_factor)
    model = LatentDiffusionModel(config)
    model.load_state_dict(loaded.model.state_dict(), strict=True)
    log.info("starting from the %s weights of %s", loaded.card.weights, folder)
    return model, sha256_file(folder / WEIGHTS), loaded.tokenizer
