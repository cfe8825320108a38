"""Export a MODEL_DIR as a diffusers folder and import one, without importing diffusers.

An LDM becomes a pipeline folder: `model_index.json` and one folder per
component (`vqvae/`, `unet/`, `scheduler/`; text models `bert/` and
`tokenizer/`), each `config.json` + `diffusion_pytorch_model.safetensors`
(LDMBert, a transformers model: `model.safetensors`). Unconditional models load
with `LDMPipeline`, super-resolution with `LDMSuperResolutionPipeline`, text with
`LDMTextToImagePipeline`. diffusers has no class-conditional LDM pipeline: a class
model's folder has no model_index.json, its components load one by one, and its
class tokens are `class_embedder/` (embedding [n_classes + 1 x D], the last row the
null class; pass `embedding[labels][:, None]` as encoder_hidden_states). A first
stage alone becomes a single AutoencoderKL or VQModel folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import Tensor

from ldm.data.shards import AtomicFolder
from ldm.errors import InputNotFound, InvalidInput
from ldm.interchange import diffusers_keys as D
from ldm.interchange.bundle import (ImportReport, Target, autoencoder_keys, ldm_keys, read_model_dir,
                                    with_schedule, write_model_dir)
from ldm.interchange.diffusers_configs import (PREDICTIONS, SCHEDULES, check_config, ldmbert_config, scheduler_config,
                                               unet_config, vae_config)
from ldm.interchange.layout import autoencoder_blocks, conditioner_blocks, unet_blocks
from ldm.interchange.mapping import Format, export_state, import_state, plan
from ldm.interchange.reference_config import REFERENCE_RESOLUTION
from ldm.reports import write_json

COMPONENT_WEIGHTS, TRANSFORMERS_WEIGHTS, CONFIG = "diffusion_pytorch_model.safetensors", "model.safetensors", "config.json"
SCHEDULER_CONFIG, INDEX = "scheduler_config.json", "model_index.json"
PIPELINES = {"none": "LDMPipeline", "concat": "LDMSuperResolutionPipeline", "text": "LDMTextToImagePipeline"}


def _write_component(folder: Path, config: dict[str, Any], tensors: dict[str, Tensor],
                     weights: str = COMPONENT_WEIGHTS) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / weights), metadata={"format": "pt"})
    write_json(folder / CONFIG, config)


def export_diffusers(model_dir: Path, out: Path, component: str | None = None) -> Path:
    """Write `out` as a diffusers folder (see the module doc); returns `out`."""
    model = read_model_dir(model_dir, component)
    ae_cfg, ae_state = model.autoencoder_card.model, model.autoencoder_state()
    vae_tensors = export_state(ae_state, plan(autoencoder_blocks(ae_cfg), D.VAE, ae_state))
    f = ae_cfg.downsample_factor
    if model.ldm is None:
        with AtomicFolder(out) as staging:
            size = model.autoencoder_card.resolution or REFERENCE_RESOLUTION  # 0: an imported first stage
            _write_component(staging, vae_config(ae_cfg, 1.0, size), vae_tensors)
        return out
    cfg = model.ldm.model.config
    vae = vae_config(ae_cfg, cfg.scale_factor, cfg.latent_size[0] * f)
    unet_state = model.state("unet.")
    unet = unet_config(cfg.unet, cfg.latent_size)
    index: dict[str, Any] = {"vqvae": ["diffusers", vae["_class_name"]], "unet": ["diffusers", unet["_class_name"]],
                             "scheduler": ["diffusers", "DDIMScheduler"]}
    cond = model.state("cond_model.")
    with AtomicFolder(out) as staging:
        _write_component(staging / "vqvae", vae, vae_tensors)
        _write_component(staging / "unet", unet, export_state(unet_state, plan(unet_blocks(cfg.unet), D.UNET,
                                                                               unet_state)))
        (staging / "scheduler").mkdir()
        write_json(staging / "scheduler" / SCHEDULER_CONFIG, scheduler_config(cfg.diffusion))
        kind = cfg.conditioning.kind
        if kind == "text":
            from ldm.conditioning.tokenizer import save_tokenizer

            tensors = export_state(cond, plan(conditioner_blocks(cfg.conditioning), D.LDMBERT, cond))
            _write_component(staging / "bert", ldmbert_config(cfg.conditioning), tensors, TRANSFORMERS_WEIGHTS)
            save_tokenizer(model.ldm.tokenizer, staging / "tokenizer")
            index.update(bert=["latent_diffusion", "LDMBertModel"], tokenizer=["transformers", "BertTokenizerFast"])
        if kind == "class":
            tensors = export_state(cond, plan(conditioner_blocks(cfg.conditioning), D.CLASS_EMBEDDER, cond))
            _write_component(staging / "class_embedder", {"n_classes": cfg.conditioning.n_classes,
                                                          "embed_dim": cfg.conditioning.embed_dim,
                                                          "null_class": cfg.conditioning.n_classes}, tensors)
        else:
            write_json(staging / INDEX, {"_class_name": PIPELINES[kind], "_diffusers_version": vae["_diffusers_version"],
                                         **index})
    return out


def _read_component(folder: Path, weights: str = COMPONENT_WEIGHTS) -> tuple[dict[str, Any], dict[str, Tensor]]:
    for path in (folder / CONFIG, folder / weights):
        if not path.is_file():
            raise InputNotFound(f"{path}: no such file (weights are read from safetensors only)")
    try:
        config = json.loads((folder / CONFIG).read_text())
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{folder / CONFIG}: not JSON ({exc})") from None
    return config, load_file(str(folder / weights))


def _import_component(folder: Path, fmt: Format, blocks: list, keys: list[str], expected: dict[str, Any],
                      weights: str = COMPONENT_WEIGHTS) -> tuple[dict[str, Any], dict[str, Tensor]]:
    config, tensors = _read_component(folder, weights)
    check_config(config, expected, str(folder / CONFIG))
    return config, import_state(tensors, plan(blocks, fmt, keys), fmt, str(folder / weights))


def _schedule(src: Path) -> dict[str, Any]:
    path = src / "scheduler" / SCHEDULER_CONFIG
    if not path.is_file():
        return {}
    config = json.loads(path.read_text())
    schedules, predictions = {v: k for k, v in SCHEDULES.items()}, {v: k for k, v in PREDICTIONS.items()}
    out = {"timesteps": config.get("num_train_timesteps"), "linear_start": config.get("beta_start"),
           "linear_end": config.get("beta_end"), "schedule": schedules.get(config.get("beta_schedule", "")),
           "parameterization": predictions.get(config.get("prediction_type", ""))}
    if None in out.values():
        raise InvalidInput(f"{path}: needs num_train_timesteps, beta_start, beta_end, a beta_schedule of"
                           f" {sorted(schedules)} and a prediction_type of {sorted(predictions)}")
    return out


def import_diffusers(src: Path, target: Target, out: Path) -> ImportReport:
    """A diffusers pipeline folder (or a single VAE folder) -> `out`/autoencoder (+ ldm or ldm_sr)."""
    preset = target.ldm_preset or target.autoencoder_preset
    if not src.is_dir():
        raise InputNotFound(f"{src}: no such folder (a diffusers pipeline or model folder)")
    vae_dir = src / "vqvae" if (src / "vqvae").is_dir() else src
    if target.ldm is not None and vae_dir == src:
        raise InvalidInput(f"{src}: holds no vqvae/ folder; --preset {preset} is an LDM (for a first stage alone"
                           f" use --preset {target.autoencoder_preset})")
    ae = target.autoencoder
    vae, ae_state = _import_component(vae_dir, D.VAE, autoencoder_blocks(ae), autoencoder_keys(ae),
                                      vae_config(ae, 1.0, 0))
    if target.ldm is None:
        report = ImportReport("diffusers", str(src), preset, tensors=len(ae_state))
        write_model_dir(out, target, ae_state, report)
        return report
    cfg = target.ldm
    _, state = _import_component(src / "unet", D.UNET, unet_blocks(cfg.unet, ""),
                                 [k.removeprefix("unet.") for k in ldm_keys(cfg, "unet.")],
                                 unet_config(cfg.unet, cfg.latent_size))
    state = {f"unet.{k}": v for k, v in state.items()}
    tokenizer = None
    if cfg.conditioning.kind in ("class", "text"):
        text = cfg.conditioning.kind == "text"
        folder, fmt = (src / "bert", D.LDMBERT) if text else (src / "class_embedder", D.CLASS_EMBEDDER)
        expected = ldmbert_config(cfg.conditioning) if text else {"n_classes": cfg.conditioning.n_classes}
        _, cond = _import_component(folder, fmt, conditioner_blocks(cfg.conditioning, ""),
                                    [k.removeprefix("cond_model.") for k in ldm_keys(cfg, "cond_model.")], expected,
                                    TRANSFORMERS_WEIGHTS if text else COMPONENT_WEIGHTS)
        state.update({f"cond_model.{k}": v for k, v in cond.items()})
        if text:
            from ldm.conditioning.tokenizer import load_tokenizer

            tokenizer = load_tokenizer(src / "tokenizer")
    factor = float(vae.get("scaling_factor", 1.0))
    schedule = _schedule(src)
    report = ImportReport("diffusers", str(src), preset, "raw", factor, "vqvae scaling_factor",
                          "scheduler_config.json" if schedule else "preset", len(ae_state) + len(state))
    target = Target(ae, target.autoencoder_preset, with_schedule(cfg, factor, **schedule), preset)
    write_model_dir(out, target, ae_state, report, state, tokenizer)
    return report
