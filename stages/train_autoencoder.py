"""Stage `train_autoencoder`: image shards -> the first-stage autoencoder (Appendix F, Eq. 25).

Trains `autoencoder.preset` with Lightning on the train shards (from random weights,
or from those of `init_from`), resumes from the last checkpoint of an interrupted
run with the same settings, and writes the weights (`model.safetensors` +
`config.json`), the health report of `ldm.autoencoder.report` and a
reconstruction grid. A NaN loss stops the run
with a clear error and keeps the last good checkpoint.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from ldm.autoencoder.checkpoint import AutoencoderCard, init_autoencoder, save_autoencoder
from ldm.autoencoder.lightning_module import AutoencoderModule
from ldm.autoencoder.losses import MissingWeightsError, build_lpips
from ldm.autoencoder.presets import preset_config
from ldm.autoencoder.report import evaluate_autoencoder, reconstruction_grid
from ldm.data import remote
from ldm.data.grids import save_grid
from ldm.data.loader import ShardData, image_loader, shard_urls
from ldm.data.location import Location
from ldm.data.shards import require_complete, shards_sha256
from ldm.data.survey import survey
from ldm.errors import UserError
from ldm.reports import write_json
from ldm.storage.settings import S3Settings
from ldm.trainer import fit, make_trainer, resume_path, write_curves
from stages.cli import arg, stage_main
from stages.params import Params, lineage, recipe_lineage, to_config

log = logging.getLogger("stages.train_autoencoder")


@dataclass(frozen=True)
class Paths:
    """The stage's inputs and outputs, as dvc.yaml names them."""

    images: Location = arg("folder or s3://bucket/prefix of {train,val}-NNNNNN.tar image shards")
    model: Path = arg("output folder: model.safetensors + config.json")
    checkpoints: Path = arg("resumable Lightning checkpoints (kept across runs)")
    metrics: Path = arg("output JSON: reconstruction and health metrics")
    curves: Path = arg("output CSV: training loss per step")
    grid: Path = arg("output PNG: originals above reconstructions")


class StageError(UserError, RuntimeError):
    """A user-facing failure: the message says what went wrong and what to do."""


def _data(params: Params, train_urls: list[str], val_urls: list[str]) -> ShardData:
    p = params.train_autoencoder
    settings = p.loader_settings()

    def make_loader(urls: list[str], training: bool) -> DataLoader:
        if training:  # endless: stopped by the step count
            return image_loader(urls, batch_size=p.batch_size, settings=settings, shuffle=p.shuffle_buffer, seed=p.seed,
                                endless=True)
        return image_loader(urls, batch_size=p.batch_size, settings=settings)

    return ShardData(train_urls, val_urls, make_loader)


def run(params: Params, paths: Paths) -> dict | None:
    """Train, export and report; return the metrics written to `paths.metrics` (None on ranks other than 0)."""
    p = params.train_autoencoder
    torch.set_num_threads(p.threads)
    loss = p.train_config()
    try:
        perceptual = build_lpips(loss.perceptual_weight, p.vgg_weights or None)
    except MissingWeightsError as exc:
        raise StageError(f"train_autoencoder.recipe.perceptual_weight is {loss.perceptual_weight}: {exc}") from None
    remote.configure(to_config(params.storage.s3, S3Settings))
    require_complete(paths.images, "download")
    train_urls, val_urls = shard_urls(paths.images, "train"), shard_urls(paths.images, "val")
    corrupt = survey(train_urls + val_urls, params.data.on_corrupt)
    train_urls, val_urls = corrupt.keep(train_urls), corrupt.keep(val_urls)
    data = _data(params, train_urls, val_urls)
    data_hash = shards_sha256(train_urls + val_urls)

    pl.seed_everything(p.seed, workers=True, verbose=False)
    start_from, init_hash = preset_config(params.autoencoder.preset), ""
    if p.init_from:
        start_from, init_hash = init_autoencoder(Path(p.init_from), start_from, "train_autoencoder.init_from")
    settings = {"params": p.model_dump(mode="json", exclude={"resume"}), "preset": params.autoencoder.preset,
                "resolution": params.data.resolution, "data_sha256": data_hash, "init_sha256": init_hash}
    ckpt = resume_path(paths.checkpoints, settings, p.resume)
    module = AutoencoderModule(start_from, loss, perceptual, batch_size=p.batch_size)
    logs = paths.checkpoints / "logs"
    trainer = make_trainer(
        steps=p.steps, done=lambda: int(module.ae_step), val_every=min(p.val_every, p.steps),
        checkpoints=paths.checkpoints, checkpoint_every=p.checkpoint_every, logs=logs, precision=p.precision,
    )
    start = time.perf_counter()
    fit(trainer, module, data, ckpt)
    seconds = time.perf_counter() - start
    if trainer.global_rank != 0:
        return None  # rank 0 evaluates and writes the outputs
    write_curves(logs / "metrics.csv", paths.curves, {"loss": "train/total", "rec": "train/rec"})
    val_loader = data.val_dataloader()

    model = module.export_model().eval()
    report = evaluate_autoencoder(model, val_loader, loss, vgg_weights=p.vgg_weights,
                                  inception_weights=p.inception_weights)
    save_grid(reconstruction_grid(model, val_loader, p.grid_images), paths.grid, nrow=p.grid_images)
    metrics = {
        "preset": params.autoencoder.preset,
        "parameters": model.num_parameters(),
        "train": {"batches": int(module.ae_step), "seconds": round(seconds, 1),
                  "resumed_from": str(ckpt) if ckpt else None, "skipped_steps": module.bad_steps.skipped},
        **report,
        "corrupt": corrupt.to_dict(),
    }
    inputs = {"images": data_hash, **({"init_from": init_hash} if init_hash else {})}
    line = lineage({"data": params.data, "autoencoder": params.autoencoder, "train_autoencoder": p}, inputs,
                   recipe=recipe_lineage(params, "train_autoencoder", loss.effective_lr(p.batch_size, trainer.world_size)))
    card = AutoencoderCard(model=model.config, preset=params.autoencoder.preset, resolution=params.data.resolution,
                           data_sha256=data_hash, lineage=line)
    save_autoencoder(paths.model, model, card)
    metrics["lineage"] = line
    write_json(paths.metrics, metrics)
    for warning in report["warnings"]:
        log.warning("%s", warning)
    log.info("val PSNR %.2f dB, SSIM %.4f after %d batches in %.0f s", report["psnr"], report["ssim"],
             metrics["train"]["batches"], seconds)
    return metrics


main = stage_main(run, Paths, __doc__)


if __name__ == "__main__":
    sys.exit(main())
