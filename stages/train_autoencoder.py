"""Stage `train_autoencoder`: image shards -> the first-stage autoencoder (Appendix F, Eq. 25).

    python -m stages.train_autoencoder --params params.yaml --images data/images \
        --model models/autoencoder --checkpoints checkpoints/autoencoder \
        --metrics metrics/autoencoder.json --curves metrics/autoencoder_loss.csv \
        --grid reports/autoencoder.png

Trains `autoencoder.preset` with Lightning on the train shards, resumes from the
last checkpoint of an interrupted run with the same settings, and writes the
weights (`model.safetensors` + `config.json`), the health report of
`stages.autoencoder_report` and a reconstruction grid. A NaN loss stops the run
with a clear error and keeps the last good checkpoint.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
import webdataset as wds
from safetensors.torch import save_file
from torch.utils.data import DataLoader

from ldm.autoencoder import MissingWeightsError, build_lpips, preset_config
from ldm.autoencoder.lightning_module import AutoencoderModule, NonFiniteLossError, TrainConfig
from ldm.data.loader import image_dataset, shard_urls
from ldm.data.shards import AtomicFolder
from stages.autoencoder_report import evaluate_autoencoder, save_grid
from stages.lineage import lineage, run_cli, write_json
from stages.params import Params, ParamsError, load_params, to_config
from stages.training import make_trainer, resume_path, shards_sha256, write_curves

log = logging.getLogger("stages.train_autoencoder")


@dataclass(frozen=True)
class Paths:
    """The stage's inputs and outputs, as dvc.yaml names them."""

    images: Path
    model: Path
    checkpoints: Path
    metrics: Path
    curves: Path
    grid: Path


class StageError(RuntimeError):
    """A user-facing failure: the message says what went wrong and what to do."""


def _check(params: Params) -> None:
    """Errors a user can fix in params.yaml, raised before any work."""
    config = preset_config(params.autoencoder.preset)
    f = config.downsample_factor
    if params.data.resolution % f:
        raise ParamsError(
            f"params.yaml: data.resolution {params.data.resolution} is not divisible by the downsampling"
            f" factor f={f} of autoencoder.preset {params.autoencoder.preset!r}; pick a resolution that is"
            f" a multiple of {f} or a preset with a smaller f"
        )


def _loaders(params: Params, images: Path) -> tuple[DataLoader, DataLoader, list[str], list[str]]:
    p = params.train_autoencoder
    train_urls, val_urls = shard_urls(images, "train"), shard_urls(images, "val")
    train = image_dataset(train_urls, shuffle=p.shuffle_buffer, seed=p.seed).repeat()  # endless; stopped by count
    val = image_dataset(val_urls, split_by_node=False)
    return (
        DataLoader(train.compose(wds.batched(p.batch_size, partial=False)), batch_size=None, num_workers=0),
        DataLoader(val.compose(wds.batched(p.batch_size)), batch_size=None, num_workers=0),
        train_urls,
        val_urls,
    )


def run(params: Params, paths: Paths) -> dict:
    """Train, export and report; return the metrics written to `paths.metrics`."""
    _check(params)
    p = params.train_autoencoder
    torch.set_num_threads(p.threads)
    loss = to_config(p.loss, TrainConfig)
    try:
        perceptual = build_lpips(loss.perceptual_weight, p.vgg_weights or None)
    except MissingWeightsError as exc:
        raise StageError(f"train_autoencoder.loss.perceptual_weight is {loss.perceptual_weight}: {exc}") from None
    train_loader, val_loader, train_urls, val_urls = _loaders(params, paths.images)
    data_hash = shards_sha256(train_urls + val_urls)

    settings = {"params": params.train_autoencoder.model_dump(mode="json"), "preset": params.autoencoder.preset,
                "resolution": params.data.resolution, "data_sha256": data_hash}
    ckpt = resume_path(paths.checkpoints, settings)
    pl.seed_everything(p.seed, workers=True, verbose=False)
    module = AutoencoderModule(preset_config(params.autoencoder.preset), loss, perceptual)
    logs = paths.checkpoints / "logs"
    trainer = make_trainer(
        steps=p.steps, done=lambda: int(module.ae_step), val_every=min(p.val_every, p.steps),
        checkpoints=paths.checkpoints, checkpoint_every=p.checkpoint_every, logs=logs, precision=p.precision,
    )
    start = time.perf_counter()
    try:
        trainer.fit(module, train_loader, val_loader, ckpt_path=str(ckpt) if ckpt else None)
    except NonFiniteLossError as exc:
        last = paths.checkpoints / "last.ckpt"
        kept = f"the last good checkpoint is {last}" if last.is_file() else "no checkpoint was written yet"
        raise StageError(f"{exc}; {kept}") from None
    seconds = time.perf_counter() - start
    write_curves(logs / "metrics.csv", paths.curves, {"loss": "train/total", "rec": "train/rec"})

    model = module.export_model().eval()
    report = evaluate_autoencoder(model, val_loader, loss, vgg_weights=p.vgg_weights,
                                  inception_weights=p.inception_weights)
    save_grid(model, val_loader, p.grid_images, paths.grid)
    metrics = {
        "preset": params.autoencoder.preset,
        "parameters": model.num_parameters(),
        "train": {"batches": int(module.ae_step), "seconds": round(seconds, 1), "resumed_from": str(ckpt) if ckpt else None},
        **report,
    }
    config = {
        "preset": params.autoencoder.preset,
        "model": model.config.to_dict(),
        "resolution": params.data.resolution,
        "downsample_factor": model.downsample_factor,
        "latent_channels": model.config.embed_dim,
        "data_sha256": data_hash,
        "lineage": lineage({"data": params.data, "autoencoder": params.autoencoder,
                            "train_autoencoder": params.train_autoencoder}, {"images": data_hash}),
    }
    with AtomicFolder(paths.model) as folder:
        tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(tensors, str(folder / "model.safetensors"), metadata={"preset": params.autoencoder.preset})
        write_json(folder / "config.json", config)
    metrics["lineage"] = config["lineage"]
    write_json(paths.metrics, metrics)
    for warning in report["warnings"]:
        log.warning("%s", warning)
    log.info("val PSNR %.2f dB, SSIM %.4f after %d batches in %.0f s", report["psnr"], report["ssim"],
             metrics["train"]["batches"], seconds)
    return metrics


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: one-line errors for bad params or inputs, no traceback."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml", help="the params file (default: params.yaml)")
    parser.add_argument("--images", required=True, type=Path, help="folder of train-/val-NNNNNN.tar image shards")
    parser.add_argument("--model", required=True, type=Path, help="output folder: model.safetensors + config.json")
    parser.add_argument("--checkpoints", required=True, type=Path, help="resumable Lightning checkpoints")
    parser.add_argument("--metrics", required=True, type=Path, help="output JSON: reconstruction and health metrics")
    parser.add_argument("--curves", required=True, type=Path, help="output CSV: training loss per step")
    parser.add_argument("--grid", required=True, type=Path, help="output PNG: originals above reconstructions")
    args = parser.parse_args(argv)
    paths = Paths(args.images, args.model, args.checkpoints, args.metrics, args.curves, args.grid)
    return run_cli(lambda: run(load_params(args.params), paths), (ParamsError, StageError, FileNotFoundError), log)


if __name__ == "__main__":
    sys.exit(main())
