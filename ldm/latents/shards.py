"""One image (or pair) shard -> one latent shard: read, encode in fixed-size batches, write (App. F).

The Lightning predict loop and the CPU task pool of stage `cache_latents` both go
through these functions, so a latent shard's bytes depend on the shard, the
autoencoder and the settings, never on the loop, the device count or the pool.
`encode_shard_task` is one pool task: it loads the autoencoder once per worker
process (keyed by its folder and hash, so a changed model is loaded again).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ldm.autoencoder.checkpoint import load_autoencoder
from ldm.autoencoder.model import Autoencoder
from ldm.data.loader import to_tensor
from ldm.data.schema import KEY, LatentSample, RawSample, image_of
from ldm.data.shards import ShardInfo, read_shards, write_shard
from ldm.errors import InvalidInput
from ldm.label_maps.pairing import attach_label_maps
from ldm.latents.config import LatentDtype, Posterior
from ldm.latents.encode import encode_latents
from ldm.storage.settings import S3Settings


@dataclass(frozen=True)
class ShardJob:
    """One input shard and the name of its latent shard under the output folder."""

    source: str
    name: str  # "train-000000.tar" or "pairs/train-000000.tar"
    label_maps: str = ""  # the label-map shard zipped in by key (stage label_maps); "" = none


@dataclass(frozen=True)
class EncodeSettings:
    """How a shard is encoded and stored: the posterior, its seed, the batch, the stored dtype, the model's hash."""

    posterior: Posterior
    seed: int
    batch_size: int
    dtype: LatentDtype
    autoencoder_sha256: str


def read_shard_images(source: str, s3: S3Settings | None = None) -> tuple[list[RawSample], torch.Tensor]:
    """A shard's raw samples and their images [N x 3 x H x W] in [-1, 1]; InvalidInput names the shard and key.
    `s3`: the S3 client settings of an s3:// source read in another process than the stage's."""
    raws, images, key = [], [], "(before the first sample)"
    try:
        for raw in read_shards([source], s3):
            key = raw[KEY]
            images.append(to_tensor(image_of(raw)))
            raws.append(raw)
    except Exception as exc:  # noqa: BLE001 - tar and image errors alike name the shard and key
        raise InvalidInput(f"{source}: sample {key}: {exc}; re-run the stage that wrote it") from None
    if not raws:
        raise InvalidInput(f"{source}: holds no samples; re-run the stage that wrote it")
    return raws, torch.stack(images)


def encode_shard(model: Autoencoder, x: torch.Tensor, keys: list[str], settings: EncodeSettings) -> np.ndarray:
    """x [N x 3 x H x W] on the model's device -> z [N x D x h x w] float32 on the CPU, `batch_size` per call."""
    step = settings.batch_size
    z = torch.cat([encode_latents(model, x[i : i + step], keys[i : i + step], posterior=settings.posterior, seed=settings.seed)
                   for i in range(0, len(keys), step)])  # (N, D, h, w)
    return z.cpu().numpy()


def write_latent_shard(path: Path, raws: list[RawSample], z: np.ndarray, settings: EncodeSettings,
                       label_maps: str = "", s3: S3Settings | None = None) -> ShardInfo:
    """The latent shard at `path` (folders made): each raw sample with its latent, stored as `settings.dtype`,
    and with its label map and layout when `label_maps` names the label-map shard (`s3`: its client settings)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    dtype = np.dtype(settings.dtype)
    samples = (LatentSample.of_source(raw, latent.astype(dtype), autoencoder_sha256=settings.autoencoder_sha256)
               for raw, latent in zip(raws, z))
    if label_maps:
        samples = attach_label_maps(samples, label_maps, s3)
    return write_shard(path, samples)


@dataclass(frozen=True)
class EncodeTask:
    """One pool task: a shard, the folder its latent shard goes to, the autoencoder folder, the settings."""

    job: ShardJob
    out: str
    model: str
    settings: EncodeSettings
    threads: int
    s3: S3Settings | None = None  # for s3:// sources


@functools.lru_cache(maxsize=2)
def _autoencoder(model: str, sha256: str) -> Autoencoder:
    """The autoencoder of `model`, loaded once per process and hash."""
    return load_autoencoder(model)[0]


def encode_shard_task(task: EncodeTask) -> ShardInfo:
    """Read, encode and write one shard on the CPU (a worker process of the task pool)."""
    torch.set_num_threads(task.threads)
    model = _autoencoder(task.model, task.settings.autoencoder_sha256)
    raws, x = read_shard_images(task.job.source, task.s3)
    z = encode_shard(model, x, [raw[KEY] for raw in raws], task.settings)
    return write_latent_shard(Path(task.out) / task.job.name, raws, z, task.settings, task.job.label_maps, task.s3)
