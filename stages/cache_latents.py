"""Stage `cache_latents`: image (and pair) shards -> latent shards + the measured scale factor (App. F, C.1).

    python -m stages.cache_latents --params params.yaml --images data/images --pairs data/pairs \
        --model models/autoencoder --out data/latents --report reports/cache_latents.json

Every shard goes through the trained encoder once, in Lightning's predict loop:
on every available device, shards split by rank, one output shard per input
shard, so the bytes do not depend on the number of devices. `data/latents/`
holds `{train,val}-NNNNNN.tar` (a sample `KEY`: `latent.npy` [C x h x w] unscaled,
`cls`, `txt`, `json`), `pairs/{train,val}-NNNNNN.tar` (the HR latent with its
`lr.png`) and `stats.json`: the paper's first-batch estimate of the latent std,
the dataset-level one (streaming, overall and per channel), the chosen
`scale_factor`, and the autoencoder's hash. The folder appears only when
complete.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
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
import webdataset as wds
from pytorch_lightning.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Dataset, Subset

from ldm.autoencoder import Autoencoder, load_autoencoder
from ldm.data.images import decode_image
from ldm.data.loader import to_tensor
from ldm.data.shards import encode_json, read_shards, sha256_file
from ldm.latents import encode_latents
from stages.latent_stats import latent_stats
from stages.lineage import lineage, run_cli, write_json
from stages.params import Params, ParamsError, load_params

log = logging.getLogger("stages.cache_latents")
CARRIED = ("cls", "txt", "lr.png")  # fields copied from the source sample as they are


@dataclass(frozen=True)
class Paths:
    """The stage's inputs and outputs, as dvc.yaml names them."""

    images: Path
    pairs: Path | None
    model: Path
    out: Path
    report: Path


@dataclass(frozen=True)
class Job:
    """One input shard and the name of its latent shard under the output folder."""

    source: str
    name: str  # "train-000000.tar" or "pairs/train-000000.tar"
    image_field: str  # "png" for image shards, "hr.png" for pairs


class StageError(RuntimeError):
    """A user-facing failure: the message names the shard (and key) and what to do."""


class ShardJobs(Dataset):
    """Each item is one whole decoded shard: keys, images [N x 3 x H x W] in [-1, 1], carried fields."""

    def __init__(self, jobs: list[Job]):
        self.jobs = jobs

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        job = self.jobs[index]
        keys, images, carried, key = [], [], [], "(before the first sample)"
        try:
            for sample in read_shards([job.source]):
                key = sample["__key__"]
                if job.image_field not in sample:
                    raise ValueError(f"has no {job.image_field!r} field")
                image, _ = decode_image(sample[job.image_field])
                keys.append(key)
                images.append(to_tensor(image))
                carried.append({name: sample[name] for name in (*CARRIED, "json") if name in sample})
        except Exception as exc:  # noqa: BLE001 - tar and image errors alike name the shard and key
            raise StageError(f"{job.source}: sample {key}: {exc}; re-run the stage that wrote it") from None
        if not keys:
            raise StageError(f"{job.source}: holds no samples; re-run the stage that wrote it")
        return {"name": job.name, "keys": keys, "x": torch.stack(images), "carried": carried}


class CacheModule(pl.LightningModule):
    """Lightning's predict loop over whole shards: this rank's share, encoded in fixed-size batches."""

    def __init__(self, autoencoder: Autoencoder, jobs: list[Job], *, posterior: str, seed: int, batch_size: int):
        super().__init__()
        self.autoencoder = autoencoder
        self.jobs, self.posterior, self.seed, self.batch_size = jobs, posterior, seed, batch_size

    def predict_dataloader(self) -> DataLoader:
        # Shard i goes to rank i mod world: no padding, no shard written twice.
        mine = list(range(self.global_rank, len(self.jobs), self.trainer.world_size))
        return DataLoader(Subset(ShardJobs(self.jobs), mine), batch_size=None, num_workers=0)

    def predict_step(self, shard: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        x, keys = shard["x"].to(self.device), shard["keys"]
        z = torch.cat([
            encode_latents(self.autoencoder, x[i : i + self.batch_size], keys[i : i + self.batch_size],
                           posterior=self.posterior, seed=self.seed)  # type: ignore[arg-type]
            for i in range(0, len(keys), self.batch_size)
        ])  # (N, D, h, w)
        return {**shard, "z": z.cpu().numpy(), "x": None}


class ShardWriter(BasePredictionWriter):
    """Writes each encoded shard as a deterministic tar, atomically (a temp file moved into place)."""

    def __init__(self, staging: Path, dtype: str, autoencoder_sha256: str):
        super().__init__(write_interval="batch")
        self.staging, self.dtype, self.autoencoder_sha256 = staging, np.dtype(dtype), autoencoder_sha256

    def write_on_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, prediction: Any, *_: Any) -> None:
        path = self.staging / prediction["name"]
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.partial")
        with open(temp, "wb") as stream:
            writer = wds.TarWriter(stream, user="ldm", group="ldm", mode=0o644, mtime=0.0, encoder=False)
            for key, z, carried in zip(prediction["keys"], prediction["z"], prediction["carried"]):
                writer.write({"__key__": key, "latent.npy": _npy(z.astype(self.dtype)), **_carry(carried, self.autoencoder_sha256)})
            writer.close()
        os.replace(temp, path)


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _carry(carried: dict[str, Any], autoencoder_sha256: str) -> dict[str, bytes]:
    """cls/txt/lr.png as they were; the json gains the autoencoder hash."""
    out = {name: value for name, value in carried.items() if name != "json"}
    meta = json.loads(carried["json"]) if "json" in carried else {}
    out["json"] = encode_json({**meta, "autoencoder_sha256": autoencoder_sha256})
    return out


def _jobs(paths: Paths, params: Params) -> list[Job]:
    jobs = [Job(str(p), p.name, "png") for p in sorted(paths.images.glob("*.tar"))]
    if not jobs:
        raise FileNotFoundError(f"{paths.images}: no image shards; run the download stage first (dvc repro download)")
    if params.cache_latents.pairs:
        if paths.pairs is None or not any(paths.pairs.glob("*.tar")):
            raise FileNotFoundError(f"{paths.pairs}: no pair shards; run `dvc repro degrade` or set cache_latents.pairs: false")
        jobs += [Job(str(p), f"pairs/{p.name}", "hr.png") for p in sorted(paths.pairs.glob("*.tar"))]
    return jobs


def autoencoder_sha256(folder: Path) -> str:
    """One hash for a trained autoencoder: its weights and its config."""
    return hashlib.sha256("".join(sha256_file(folder / name) for name in ("model.safetensors", "config.json")).encode()).hexdigest()


def run(params: Params, paths: Paths) -> dict | None:
    """Encode, measure, write; the stats on rank 0 (None on the other ranks)."""
    p = params.cache_latents
    torch.set_num_threads(p.threads)
    model, ae_config = load_autoencoder(paths.model)
    ae_hash = autoencoder_sha256(paths.model)
    jobs = _jobs(paths, params)
    staging = paths.out.with_name(f".{paths.out.name}.partial")
    if int(os.environ.get("LOCAL_RANK", "0")) == 0 and int(os.environ.get("NODE_RANK", "0")) == 0:
        shutil.rmtree(staging, ignore_errors=True)  # other ranks start writing only after every rank has joined
    staging.mkdir(parents=True, exist_ok=True)
    trainer = pl.Trainer(accelerator=p.accelerator, devices=p.devices, strategy=p.strategy, precision="32-true",
                         logger=False, enable_model_summary=False, use_distributed_sampler=False,
                         callbacks=[ShardWriter(staging, p.dtype, ae_hash)])
    module = CacheModule(model, jobs, posterior=p.posterior, seed=p.seed, batch_size=p.batch_size)
    trainer.predict(module, return_predictions=False)
    trainer.strategy.barrier("cache_latents")
    if trainer.global_rank != 0:
        return None
    stats = latent_stats(staging, kind=model.config.kind, params=p)
    stats.update(autoencoder_sha256=ae_hash, autoencoder_preset=ae_config.get("preset"), posterior=p.posterior,
                 dtype=p.dtype, shards={job.name: sha256_file(staging / job.name) for job in jobs},
                 lineage=lineage({"cache_latents": p}, {"autoencoder": ae_hash, **{job.name: sha256_file(job.source) for job in jobs}}))
    write_json(staging / "stats.json", stats)
    shutil.rmtree(paths.out, ignore_errors=True)
    os.replace(staging, paths.out)
    report = {key: stats[key] for key in ("counts", "scale_factor", "scale_rule", "first_batch", "dataset", "scaled_std",
                                          "first_batch_vs_dataset", "warnings", "autoencoder_sha256", "lineage")}
    write_json(paths.report, report)
    for warning in stats["warnings"]:
        log.warning("%s", warning)
    log.info("cached %d latents; scale_factor %.5f (dataset std %.5f, first batch std %.5f); scaled std %.4f",
             sum(stats["counts"].values()), stats["scale_factor"], stats["dataset"]["std"], stats["first_batch"]["std"],
             stats["scaled_std"])
    return stats


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: one-line errors for bad params or inputs, no traceback."""
    parser = argparse.ArgumentParser(prog="python -m stages.cache_latents", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    parser.add_argument("--images", default="data/images", type=Path, help="image shard folder (default: %(default)s)")
    parser.add_argument("--pairs", default="data/pairs", type=Path, help="pair shard folder (default: %(default)s)")
    parser.add_argument("--model", default="models/autoencoder", type=Path, help="trained autoencoder (default: %(default)s)")
    parser.add_argument("--out", default="data/latents", type=Path, help="latent cache folder (default: %(default)s)")
    parser.add_argument("--report", default="reports/cache_latents.json", type=Path, help="metrics (default: %(default)s)")
    args = parser.parse_args(argv)
    return run_cli(lambda: run(load_params(args.params), Paths(args.images, args.pairs, args.model, args.out, args.report)),
                   (ParamsError, StageError, FileNotFoundError, ValueError), log)


if __name__ == "__main__":
    sys.exit(main())
