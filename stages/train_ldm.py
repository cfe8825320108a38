"""Stages `train_ldm` and `train_sr`: cached latents -> a latent diffusion model (Eq. 2, Sec. 3.3, D.1).

    python -m stages.train_ldm --section train_ldm --params params.yaml --latents data/latents \
        --autoencoder models/autoencoder --model models/ldm --checkpoints checkpoints/ldm \
        --metrics metrics/ldm.json --curves metrics/ldm_loss.csv

Trains the section's preset with Lightning on the cached latents multiplied by
the scale factor of `stats.json` (never a constant). `train_sr` trains on the
pair latents (`data/latents/pairs`), the LR image concatenated to the input.
Writes `model.safetensors` (the EMA weights; config and scale factor in its
metadata), `config.json` (preset, schedule, scale factor, conditioning,
lineage), the tokenizer for text models, a metrics JSON and a loss CSV.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import logging
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import webdataset as wds
from safetensors.torch import save_file
from torch.utils.data import DataLoader

from ldm.autoencoder import AutoencoderConfig
from ldm.conditioning import save_tokenizer, train_wordpiece
from ldm.data.images import decode_image
from ldm.data.latents import collate, latent_dataset
from ldm.data.loader import shard_urls
from ldm.data.shards import AtomicFolder, read_shards
from ldm.unet import LDMConfig, build_ldm, preset_config, to_safetensors_payload
from ldm.unet.lightning_module import LDMTrainingModule, TrainConfig
from stages.cache_latents import autoencoder_sha256
from stages.lineage import lineage, run_cli, write_json
from stages.params import Params, ParamsError, load_params, to_config
from stages.training import make_trainer, resume_path, shards_sha256, write_curves
from stages.training_params import TrainLDMParams

log = logging.getLogger("stages.train_ldm")
SECTIONS = ("train_ldm", "train_sr")


@dataclass(frozen=True)
class Paths:
    """The stage's inputs and outputs, as dvc.yaml names them."""

    latents: Path  # the cache folder with stats.json
    autoencoder: Path
    model: Path
    checkpoints: Path
    metrics: Path
    curves: Path


class StageError(RuntimeError):
    """A user-facing failure: the message names both sides of a mismatch and what to do."""


def _stats(latents: Path) -> dict:
    path = latents / "stats.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; run `dvc repro cache_latents` first")
    return json.loads(path.read_text())


def _config(p: TrainLDMParams, section: str, stats: dict, shards: list[str], ae_hash: str) -> LDMConfig:
    """The preset with the section's overrides, checked against the cache: errors name both sides."""
    config = preset_config(p.preset)
    if p.first_stage:
        config = dataclasses.replace(config, first_stage=p.first_stage)
    if p.n_classes and config.conditioning.kind == "class":
        config = dataclasses.replace(config, conditioning=dataclasses.replace(config.conditioning, n_classes=p.n_classes))
    if stats["autoencoder_sha256"] != ae_hash:
        raise StageError(f"the latent cache was encoded by autoencoder {stats['autoencoder_sha256'][:12]} but "
                         f"{section} trains with {ae_hash[:12]}; re-run `dvc repro cache_latents`")
    cached = stats.get("autoencoder_preset")
    if config.first_stage and cached and config.first_stage != cached:
        raise StageError(f"{section}.preset {p.preset!r} pairs with autoencoder {config.first_stage!r}, the latent cache "
                         f"holds {cached!r} latents; set {section}.first_stage: {cached} to pair them deliberately")
    first = next(iter(read_shards(shards[:1])))
    shape = tuple(np.load(io.BytesIO(first["latent.npy"]), allow_pickle=False).shape)
    if shape != config.latent_shape:
        raise StageError(f"{section}.preset {p.preset!r} expects latents {config.latent_shape} (C, h, w), the cache "
                         f"holds {shape}; pick a preset for this autoencoder and data.resolution")
    return config


def _check_labels(config: LDMConfig, shards: list[str], section: str) -> list[str]:
    """Class ids within range and captions present, as the conditioning needs; the captions come back."""
    kind, captions, top = config.conditioning.kind, [], -1
    for sample in read_shards(shards):
        top = max(top, int(sample["cls"]))
        captions.append(sample["txt"].decode())
    if kind == "class" and top >= config.conditioning.n_classes:
        raise StageError(f"the cache has class ids up to {top}, {section}.preset {config.conditioning.n_classes} classes; "
                         f"set {section}.n_classes: {top + 1}")
    if kind == "text" and not any(c.strip() for c in captions):
        raise StageError(f"{section}.preset is text-conditioned but every caption in the cache is empty")
    return captions


def _loaders(p: TrainLDMParams, train: list[str], val: list[str], scale: float) -> tuple[DataLoader, DataLoader]:
    batched = wds.batched(p.batch_size, collation_fn=collate, partial=False)
    train_ds = latent_dataset(train, scale_factor=scale, shuffle=p.shuffle_buffer, seed=p.seed).repeat()
    val_ds = latent_dataset(val, scale_factor=scale, split_by_node=False)
    return (DataLoader(train_ds.compose(batched), batch_size=None, num_workers=0),
            DataLoader(val_ds.compose(wds.batched(p.batch_size, collation_fn=collate)), batch_size=None, num_workers=0))


def _loss_drop(curve: Path) -> dict:
    """Mean training loss over the first and the last 10% of logged steps."""
    losses = [float(row["loss"]) for row in csv.DictReader(curve.open())]
    if len(losses) < 10:
        return {"first_10pct": None, "last_10pct": None, "ratio": None}
    k = max(1, len(losses) // 10)
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    return {"first_10pct": first, "last_10pct": last, "ratio": last / first}


def run(params: Params, paths: Paths, section: str = "train_ldm") -> dict:
    """Train, export and report; the metrics written to `paths.metrics` come back."""
    p: TrainLDMParams = getattr(params, section)
    torch.set_num_threads(p.threads)
    stats = _stats(paths.latents)
    folder = paths.latents / "pairs" if section == "train_sr" else paths.latents
    train, val = shard_urls(folder, "train"), shard_urls(folder, "val")
    ae_hash = autoencoder_sha256(paths.autoencoder)
    config = _config(p, section, stats, train, ae_hash)
    captions = _check_labels(config, train, section)
    scale = float(stats["scale_factor"])
    tokenizer = train_wordpiece(captions, config.conditioning.vocab_size) if config.conditioning.kind == "text" else None
    data_hash = shards_sha256(train + val)
    settings = {"section": section, "params": p.model_dump(mode="json"), "data_sha256": data_hash, "scale_factor": scale}
    ckpt = resume_path(paths.checkpoints, settings)
    pl.seed_everything(p.seed, workers=True, verbose=False)
    module = LDMTrainingModule(build_ldm(config), to_config(p.loss, TrainConfig), tokenizer)
    logs = paths.checkpoints / "logs"
    trainer = make_trainer(steps=p.steps, done=lambda: module.global_step, val_every=min(p.val_every, p.steps),
                           checkpoints=paths.checkpoints, checkpoint_every=p.checkpoint_every, logs=logs,
                           precision=p.precision, grad_clip=p.loss.grad_clip)
    train_loader, val_loader = _loaders(p, train, val, scale)
    start = time.perf_counter()
    trainer.fit(module, train_loader, val_loader, ckpt_path=str(ckpt) if ckpt else None)
    seconds = time.perf_counter() - start
    write_curves(logs / "metrics.csv", paths.curves, {"loss": "train/loss"})
    val_logs = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    model = (module.ema if module.ema is not None else module.model).eval()
    line = lineage({section: p}, {"latents": data_hash, "autoencoder": ae_hash})
    meta = {"preset": p.preset, "section": section, "scale_factor": scale, "ldm": config.to_dict(),
            "autoencoder_sha256": ae_hash, "autoencoder_preset": stats.get("autoencoder_preset"),
            "latent_stats": {k: stats[k] for k in ("scale_rule", "first_batch", "dataset", "scaled_std")},
            "weights": "ema" if module.ema is not None else "raw", "lineage": line}
    if config.conditioning.kind == "concat":  # HR / LR side of the pairs: what `ldm upscale` multiplies by
        lr_side = decode_image(next(iter(read_shards(train[:1])))["lr.png"])[0].shape[0]
        f = AutoencoderConfig.from_dict(json.loads((paths.autoencoder / "config.json").read_text())["model"]).downsample_factor
        meta["sr_scale"] = config.latent_size[0] * f // lr_side
    if tokenizer is not None:  # prompts for sampling and evaluation: the training captions, most frequent first
        meta["captions"] = [c for c, _ in Counter(c for c in captions if c.strip()).most_common(64)]
    with AtomicFolder(paths.model) as out:
        tensors, metadata = to_safetensors_payload(model, scale_factor=scale, extra={"preset": p.preset})
        save_file(tensors, str(out / "model.safetensors"), metadata=metadata)
        write_json(out / "config.json", meta)
        if tokenizer is not None:
            save_tokenizer(tokenizer, out / "tokenizer")
    metrics = {"preset": p.preset, "parameters": model.num_parameters(), "scale_factor": scale,
               "train": {"batches": int(module.global_step), "seconds": round(seconds, 1), "resumed_from": str(ckpt) if ckpt else None},
               "loss": _loss_drop(paths.curves), "val": val_logs, "lineage": line}
    write_json(paths.metrics, metrics)
    log.info("%s: %d batches in %.0f s; train loss %s -> %s", section, metrics["train"]["batches"], seconds,
             metrics["loss"]["first_10pct"], metrics["loss"]["last_10pct"])
    return metrics


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: one-line errors for bad params or inputs, no traceback."""
    parser = argparse.ArgumentParser(prog="python -m stages.train_ldm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--section", choices=SECTIONS, default="train_ldm", help="params section (default: %(default)s)")
    parser.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    parser.add_argument("--latents", default="data/latents", type=Path, help="latent cache with stats.json")
    parser.add_argument("--autoencoder", default="models/autoencoder", type=Path, help="the autoencoder of the cache")
    parser.add_argument("--model", required=True, type=Path, help="output folder: model.safetensors + config.json")
    parser.add_argument("--checkpoints", required=True, type=Path, help="resumable Lightning checkpoints")
    parser.add_argument("--metrics", required=True, type=Path, help="output JSON: losses and lineage")
    parser.add_argument("--curves", required=True, type=Path, help="output CSV: training loss per step")
    args = parser.parse_args(argv)
    paths = Paths(args.latents, args.autoencoder, args.model, args.checkpoints, args.metrics, args.curves)
    return run_cli(lambda: run(load_params(args.params), paths, args.section),
                   (ParamsError, StageError, FileNotFoundError, ValueError), log)


if __name__ == "__main__":
    sys.exit(main())
