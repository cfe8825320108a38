"""Stage `cache_latents`: image (and pair) shards -> latent shards + the measured scale factor (App. F, C.1).

Every shard goes through the trained encoder once, in Lightning's predict loop:
on every available device, shards split by rank, one output shard per input
shard, so the bytes do not depend on the number of devices. The output folder
holds `{train,val}-NNNNNN.tar` (`LatentSample`s: the latent [C x h x w]
unscaled, class, caption, metadata), `pairs/{train,val}-NNNNNN.tar` (the HR
latent with its LR image) and `stats.json` (`LatentStats`): the paper's
first-batch estimate of the latent std, the dataset-level one (streaming,
overall and per channel), the chosen `scale_factor`, and the autoencoder's
hash. The folder appears only when complete; an s3://bucket/prefix output is
built locally, then uploaded with stats.json last (`ldm.data.remote.publish`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Dataset, Subset

from ldm.autoencoder.checkpoint import autoencoder_sha256, load_autoencoder
from ldm.autoencoder.model import Autoencoder
from ldm.data import remote
from ldm.data.loader import loader_options, to_tensor
from ldm.data.loader_config import LoaderSettings
from ldm.data.location import Location, name_of
from ldm.data.schema import KEY, LatentSample, image_of
from ldm.data.shards import read_shards, require_complete, sha256_file, write_shard
from ldm.errors import InputNotFound, InvalidInput
from ldm.latents.encode import encode_latents
from ldm.latents.stats import PAIRS, STATS, measure_latent_stats, write_stats
from ldm.reports import write_json
from ldm.storage.settings import S3Settings
from stages.cli import arg, stage_main
from stages.params import Params, lineage, to_config

log = logging.getLogger("stages.cache_latents")


@dataclass(frozen=True)
class Paths:
    """The stage's inputs and outputs, as dvc.yaml names them."""

    images: Location = arg("folder or s3://bucket/prefix of {train,val}-NNNNNN.tar image shards")
    pairs: Location = arg("folder or s3:// prefix of the degrade stage's pair shards (read when cache_latents.pairs is true)")
    model: Path = arg("the trained autoencoder folder")
    out: Location = arg("output latent cache folder or s3://bucket/prefix (shards + stats.json, written last)")
    report: Path = arg("output JSON: the scale factor and the statistics behind it")


@dataclass(frozen=True)
class Job:
    """One input shard and the name of its latent shard under the output folder."""

    source: str
    name: str  # "train-000000.tar" or "pairs/train-000000.tar"


class ShardJobs(Dataset):
    """Each item is one whole decoded shard: its raw samples and images [N x 3 x H x W] in [-1, 1]."""

    def __init__(self, jobs: list[Job]):
        self.jobs, self.s3 = jobs, remote.current()  # the settings travel to the loader workers with the dataset

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        job = self.jobs[index]
        raws, images, key = [], [], "(before the first sample)"
        try:
            for raw in read_shards([job.source], self.s3):
                key = raw[KEY]
                images.append(to_tensor(image_of(raw)))
                raws.append(raw)
        except Exception as exc:  # noqa: BLE001 - tar and image errors alike name the shard and key
            raise InvalidInput(f"{job.source}: sample {key}: {exc}; re-run the stage that wrote it") from None
        if not raws:
            raise InvalidInput(f"{job.source}: holds no samples; re-run the stage that wrote it")
        return {"name": job.name, "raws": raws, "x": torch.stack(images)}


class CacheModule(pl.LightningModule):
    """Lightning's predict loop over whole shards: this rank's share, encoded in fixed-size batches."""

    def __init__(self, autoencoder: Autoencoder, jobs: list[Job], *, posterior: str, seed: int, batch_size: int,
                 loader: LoaderSettings):
        super().__init__()
        self.autoencoder = autoencoder
        self.jobs, self.posterior, self.seed, self.batch_size, self.loader = jobs, posterior, seed, batch_size, loader

    def predict_dataloader(self) -> DataLoader:
        # Shard i goes to rank i mod world: no padding, no shard written twice. Workers read and decode
        # whole shards; the sequential sampler keeps the shard order.
        mine = list(range(self.global_rank, len(self.jobs), self.trainer.world_size))
        return DataLoader(Subset(ShardJobs(self.jobs), mine), batch_size=None, **loader_options(self.loader))

    def predict_step(self, shard: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        x, keys = shard["x"].to(self.device), [raw[KEY] for raw in shard["raws"]]
        z = torch.cat([
            encode_latents(self.autoencoder, x[i : i + self.batch_size], keys[i : i + self.batch_size],
                           posterior=self.posterior, seed=self.seed)  # type: ignore[arg-type]
            for i in range(0, len(keys), self.batch_size)
        ])  # (N, D, h, w)
        return {"name": shard["name"], "raws": shard["raws"], "z": z.cpu().numpy()}


class ShardWriter(BasePredictionWriter):
    """Writes each encoded shard through the one shard writer (deterministic, atomic)."""

    def __init__(self, staging: Path, dtype: str, autoencoder_hash: str):
        super().__init__(write_interval="batch")
        self.staging, self.dtype, self.autoencoder_hash = staging, np.dtype(dtype), autoencoder_hash

    def write_on_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, prediction: Any, *_: Any) -> None:
        path = self.staging / prediction["name"]
        path.parent.mkdir(parents=True, exist_ok=True)
        write_shard(path, (LatentSample.of_source(raw, z.astype(self.dtype), autoencoder_sha256=self.autoencoder_hash)
                           for raw, z in zip(prediction["raws"], prediction["z"])))


def _jobs(paths: Paths, params: Params) -> list[Job]:
    require_complete(paths.images, "download")
    jobs = [Job(url, name_of(url)) for url in remote.glob(paths.images, "*.tar")]
    if not jobs:
        raise InputNotFound(f"{paths.images}: no image shards; run the download stage first (dvc repro download)")
    if params.cache_latents.pairs:
        require_complete(paths.pairs, "degrade")
        pairs = remote.glob(paths.pairs, "*.tar")
        if not pairs:
            raise InputNotFound(f"{paths.pairs}: no pair shards; run `dvc repro degrade` or set cache_latents.pairs: false")
        jobs += [Job(url, f"{PAIRS}/{name_of(url)}") for url in pairs]
    return jobs


def run(params: Params, paths: Paths) -> dict | None:
    """Encode, measure, write; stats.json's content on rank 0 (None on the other ranks)."""
    p = params.cache_latents
    torch.set_num_threads(p.threads)
    remote.configure(to_config(params.storage.s3, S3Settings))
    model, card = load_autoencoder(paths.model)
    ae_hash = autoencoder_sha256(paths.model)
    jobs = _jobs(paths, params)
    staging = remote.staging_for(paths.out)
    if int(os.environ.get("LOCAL_RANK", "0")) == 0 and int(os.environ.get("NODE_RANK", "0")) == 0:
        shutil.rmtree(staging, ignore_errors=True)  # other ranks start writing only after every rank has joined
    staging.mkdir(parents=True, exist_ok=True)
    trainer = pl.Trainer(accelerator=p.accelerator, devices=p.devices, strategy=p.strategy, precision="32-true",
                         logger=False, enable_model_summary=False, use_distributed_sampler=False,
                         callbacks=[ShardWriter(staging, p.dtype, ae_hash)])
    module = CacheModule(model, jobs, posterior=p.posterior, seed=p.seed, batch_size=p.batch_size,
                         loader=p.loader_settings())
    trainer.predict(module, return_predictions=False)
    trainer.strategy.barrier("cache_latents")
    if trainer.global_rank != 0:
        return None
    measured = measure_latent_stats(staging, kind=model.config.kind, batch_size=p.batch_size, rule=p.scale_rule,
                                    fixed=p.scale_value, std_tolerance=p.std_tolerance)
    stats = dataclasses.replace(
        measured, autoencoder_sha256=ae_hash, autoencoder_preset=card.preset, posterior=p.posterior, dtype=p.dtype,
        shards={job.name: sha256_file(staging / job.name) for job in jobs},
        lineage=lineage({"cache_latents": p}, {"autoencoder": ae_hash, **{job.name: remote.sha256_of(job.source) for job in jobs}}))
    write_stats(staging, stats)
    remote.publish(staging, paths.out, STATS)
    write_json(paths.report, stats.report())
    for warning in stats.warnings:
        log.warning("%s", warning)
    log.info("cached %d latents; scale_factor %.5f (dataset std %.5f, first batch std %.5f); scaled std %.4f",
             sum(stats.counts.values()), stats.scale_factor, stats.dataset.std, stats.first_batch.std, stats.scaled_std)
    return stats.to_dict()


main = stage_main(run, Paths, __doc__)


if __name__ == "__main__":
    sys.exit(main())
