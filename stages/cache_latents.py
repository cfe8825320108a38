"""Stage `cache_latents`: image (and pair) shards -> latent shards + the measured scale factor (App. F, C.1).

Every shard goes through the trained encoder once, one output shard per input
shard (ldm/latents/shards.py), so the bytes depend neither on how many encoders
ran nor where. On a GPU, or on the CPU with one worker, that is Lightning's
predict loop on every available device, shards split by rank. On the CPU with
`cache_latents.workers` > 1 or a Dask cluster (`cluster.address`), each shard
is one task of the task pool (ldm/parallel.py), retried on transient errors.
The output folder holds `{train,val}-NNNNNN.tar` (`LatentSample`s: the latent
[C x h x w] unscaled, class, caption, metadata), `pairs/{train,val}-NNNNNN.tar`
(the HR latent with its LR image) and `stats.json` (`LatentStats`). With
`cache_latents.masks` (inpainting) each image's latent shard also holds the
latent of the masked image x (1 - m) and the mask at latent size, zipped by
key from the masks stage's shards (`--masks`); pairs/ stay as they are and
the scale factor is measured on the image latents only. `stats.json`: the
paper's first-batch estimate of the latent std, the dataset-level one
(streaming, overall and per channel), the chosen `scale_factor`, and the
autoencoder's hash. The folder appears only when complete; the report adds
where the shards were encoded (`tasks`). An
s3://bucket/prefix output is built locally, then uploaded with stats.json last
(`ldm.data.remote.publish`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Dataset, Subset

from ldm.autoencoder.checkpoint import autoencoder_sha256, load_autoencoder, read_card
from ldm.autoencoder.model import Autoencoder
from ldm.data import remote
from ldm.data.loader import loader_options
from ldm.data.loader_config import LoaderSettings
from ldm.data.location import Location, absolute, name_of
from ldm.data.schema import KEY
from ldm.data.shards import require_complete, sha256_file
from ldm.data.survey import Survey, survey
from ldm.errors import InputNotFound, InvalidInput
from ldm.latents.shards import (
    EncodeSettings,
    EncodeTask,
    ShardJob,
    encode_masked,
    encode_shard,
    encode_shard_task,
    read_shard_images,
    read_shard_masks,
    usable_jobs,
    write_latent_shard,
)
from ldm.latents.stats import PAIRS, STATS, measure_latent_stats, write_stats
from ldm.parallel import TaskLog, TaskRecord, map_tasks, task_pool
from ldm.placement import is_launch_rank_zero
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
    masks: Location | None = arg("folder or s3:// prefix of the masks stage's mask shards (read when cache_latents.masks"
                                 " is true)", optional=True)
    label_maps: Location | None = arg("folder or s3:// prefix of the label_maps stage's shards "
                                      "(read when cache_latents.label_maps is true)", optional=True)


class ShardJobs(Dataset):
    """Each item is one whole decoded shard: its raw samples and images [N x 3 x H x W] in [-1, 1]."""

    def __init__(self, jobs: list[ShardJob]):
        self.jobs, self.s3 = jobs, remote.current()  # the settings travel to the loader workers with the dataset

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        job = self.jobs[index]
        raws, x = read_shard_images(job.source, self.s3)
        masks = read_shard_masks(job.masks, [raw[KEY] for raw in raws], self.s3) if job.masks else None
        return {"name": job.name, "raws": raws, "x": x, "m": masks, "label_maps": job.label_maps}


class CacheModule(pl.LightningModule):
    """Lightning's predict loop over whole shards: this rank's share, encoded in fixed-size batches."""

    def __init__(self, autoencoder: Autoencoder, jobs: list[ShardJob], settings: EncodeSettings, loader: LoaderSettings):
        super().__init__()
        self.autoencoder = autoencoder
        self.jobs, self.settings, self.loader = jobs, settings, loader

    def predict_dataloader(self) -> DataLoader:
        # Shard i goes to rank i mod world: no padding, no shard written twice. Workers read and decode
        # whole shards; the sequential sampler keeps the shard order.
        mine = list(range(self.global_rank, len(self.jobs), self.trainer.world_size))
        return DataLoader(Subset(ShardJobs(self.jobs), mine), batch_size=None, **loader_options(self.loader))

    def predict_step(self, shard: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        keys = [raw[KEY] for raw in shard["raws"]]
        x = shard["x"].to(self.device)
        z = encode_shard(self.autoencoder, x, keys, self.settings)  # (N, D, h, w)
        masked = None if shard["m"] is None else encode_masked(self.autoencoder, x, shard["m"].to(self.device), keys,
                                                               self.settings)
        return {"name": shard["name"], "raws": shard["raws"], "z": z, "masked": masked, "label_maps": shard["label_maps"]}


class ShardWriter(BasePredictionWriter):
    """Writes each encoded shard through the one latent shard writer (deterministic, atomic)."""

    def __init__(self, staging: Path, settings: EncodeSettings):
        super().__init__(write_interval="batch")
        self.staging, self.settings = staging, settings

    def write_on_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, prediction: Any, *_: Any) -> None:
        write_latent_shard(self.staging / prediction["name"], prediction["raws"], prediction["z"], self.settings,
                           prediction["masked"], prediction["label_maps"], remote.current())


def _jobs(paths: Paths, params: Params) -> tuple[list[ShardJob], Survey]:
    """A job per usable image (and pair) shard under `data.on_corrupt`, and the record of the shards set aside."""
    require_complete(paths.images, "download")
    urls = remote.glob(paths.images, "*.tar")
    if not urls:
        raise InputNotFound(f"{paths.images}: no image shards; run the download stage first (dvc repro download)")
    images = survey(urls, params.data.on_corrupt)  # first: the masks and label maps mirror the shards kept
    jobs = [ShardJob(url, name_of(url)) for url in images.keep(urls)]
    aside = {name_of(entry.shard) for entry in images.set_aside}
    if params.cache_latents.masks:
        masks = _mirror(jobs, paths.masks, "masks", aside)
        jobs = [dataclasses.replace(job, masks=masks[job.name]) for job in jobs]
    if params.cache_latents.label_maps:
        maps = _mirror(jobs, paths.label_maps, "label_maps", aside)
        jobs = [dataclasses.replace(job, label_maps=maps[job.name]) for job in jobs]
    if params.cache_latents.pairs:
        require_complete(paths.pairs, "degrade")
        pairs = remote.glob(paths.pairs, "*.tar")
        if not pairs:
            raise InputNotFound(f"{paths.pairs}: no pair shards; run `dvc repro degrade` or set cache_latents.pairs: false")
        jobs += [ShardJob(url, f"{PAIRS}/{name_of(url)}") for url in pairs]
    jobs, others = usable_jobs(jobs, params.data.on_corrupt, surveyed=set(urls))
    return jobs, images + others


def _mirror(jobs: list[ShardJob], folder: Location | None, stage: str, aside: set[str]) -> dict[str, str]:
    """The shards of `stage`'s output folder by the name of the image shard they mirror (cache_latents.<stage>);
    the folder must hold one shard per image shard, of the same name (one mirroring an image shard set aside is
    passed over)."""
    if folder is None:
        flag = f"--{stage.replace('_', '-')}"
        raise InputNotFound(f"cache_latents.{stage} is true but no {flag} folder was given; pass the {stage} stage's "
                            f"output ({flag} data/{stage}) or set cache_latents.{stage}: false")
    require_complete(folder, stage)
    found = {name_of(url): absolute(url) for url in remote.glob(folder, "*.tar") if name_of(url) not in aside}
    images = [job.name for job in jobs]
    if sorted(found) != sorted(images):
        missing = sorted(set(images) - set(found)) or sorted(set(found) - set(images))
        raise InvalidInput(f"{folder}: the {stage} shards do not mirror the image shards (first differing: "
                           f"{missing[0]}); run `dvc repro {stage}` on these images, or set cache_latents.{stage}: false")
    return found


def _input_hashes(jobs: list[ShardJob]) -> dict[str, str]:
    """sha256 of every input shard: images and pairs by their output name, masks as masks/<name>, label maps as
    label_maps/<name>."""
    hashes = {job.name: remote.sha256_of(job.source) for job in jobs}
    hashes |= {f"masks/{job.name}": remote.sha256_of(job.masks) for job in jobs if job.masks}
    return hashes | {f"label_maps/{job.name}": remote.sha256_of(job.label_maps) for job in jobs if job.label_maps}


def on_task_pool(params: Params) -> bool:
    """The CPU path: no GPU in use, and more than one worker or a Dask cluster to spread the shards over."""
    p = params.cache_latents
    cpu = p.accelerator == "cpu" or (p.accelerator == "auto" and not torch.cuda.is_available())
    return cpu and (p.workers > 1 or bool(params.cluster.address))


def _encode_in_lightning(params: Params, paths: Paths, jobs: list[ShardJob], staging: Path,
                         settings: EncodeSettings) -> tuple[int, TaskRecord]:
    """Every shard through Lightning's predict loop on this process's rank: (global rank, the record)."""
    p, start = params.cache_latents, time.perf_counter()
    model, _ = load_autoencoder(paths.model)
    trainer = pl.Trainer(**p.placement().to_dict(), precision="32-true",
                         logger=False, enable_model_summary=False, use_distributed_sampler=False,
                         callbacks=[ShardWriter(staging, settings)])
    trainer.predict(CacheModule(model, jobs, settings, p.loader_settings()), return_predictions=False)
    trainer.strategy.barrier("cache_latents")
    where = f"lightning {trainer.accelerator.__class__.__name__.removesuffix('Accelerator').lower()}"
    return trainer.global_rank, TaskRecord(len(jobs), where, trainer.world_size, (), round(time.perf_counter() - start, 3))


def _encode_on_task_pool(params: Params, paths: Paths, jobs: list[ShardJob], staging: Path,
                         settings: EncodeSettings) -> TaskRecord:
    """Every shard as one task of the local pool or the Dask cluster; each worker loads the model once."""
    p, cluster, tasks = params.cache_latents, params.cluster, TaskLog()
    work = [EncodeTask(dataclasses.replace(job, source=absolute(job.source)), str(staging.resolve()),
                       str(paths.model.resolve()), settings, p.threads, remote.current()) for job in jobs]  # absolute paths: a worker's cwd is its own
    with task_pool(p.workers, cluster.address, cluster.timeout_s) as pool:
        for _ in map_tasks(pool, encode_shard_task, work, [job.name for job in jobs], retries=cluster.retries,
                           log_to=tasks, desc="encode"):
            pass
    return tasks.record()


def run(params: Params, paths: Paths) -> dict | None:
    """Encode, measure, write; stats.json's content on rank 0 (None on the other ranks)."""
    p = params.cache_latents
    torch.set_num_threads(p.threads)
    remote.configure(to_config(params.storage.s3, S3Settings))
    card = read_card(paths.model)
    ae_hash = autoencoder_sha256(paths.model)
    jobs, corrupt = _jobs(paths, params)
    settings = EncodeSettings(p.posterior, p.seed, p.batch_size, p.dtype, ae_hash)
    staging = remote.staging_for(paths.out)
    if is_launch_rank_zero():
        shutil.rmtree(staging, ignore_errors=True)  # other ranks start writing only after every rank has joined
    staging.mkdir(parents=True, exist_ok=True)
    try:
        if on_task_pool(params):
            rank, tasks = 0, _encode_on_task_pool(params, paths, jobs, staging, settings)
        else:
            rank, tasks = _encode_in_lightning(params, paths, jobs, staging, settings)
        if rank != 0:
            return None
        measured = measure_latent_stats(staging, kind=card.model.kind, batch_size=p.batch_size, rule=p.scale_rule,
                                        fixed=p.scale_value, std_tolerance=p.std_tolerance)
        stats = dataclasses.replace(
            measured, autoencoder_sha256=ae_hash, autoencoder_preset=card.preset, posterior=p.posterior, dtype=p.dtype,
            shards={job.name: sha256_file(staging / job.name) for job in jobs},
            lineage=lineage({"cache_latents": p}, {"autoencoder": ae_hash, **_input_hashes(jobs)}))
        write_stats(staging, stats)
        remote.publish(staging, paths.out, STATS)
    except BaseException:
        if is_launch_rank_zero():
            shutil.rmtree(staging, ignore_errors=True)  # a failed cache (a full disk) keeps neither space nor a part
        raise
    write_json(paths.report, {**stats.report(), "corrupt": corrupt.to_dict(), "tasks": tasks.to_dict()})
    for warning in stats.warnings:
        log.warning("%s", warning)
    log.info("cached %d latents; scale_factor %.5f (dataset std %.5f, first batch std %.5f); scaled std %.4f",
             sum(stats.counts.values()), stats.scale_factor, stats.dataset.std, stats.first_batch.std, stats.scaled_std)
    return stats.to_dict()


main = stage_main(run, Paths, __doc__)


if __name__ == "__main__":
    sys.exit(main())
