"""One image (or pair) shard -> one latent shard: read, encode in fixed-size batches, write (App. F).

The Lightning predict loop and the CPU task pool of stage `cache_latents` both go
through these functions, so a latent shard's bytes depend on the shard, the
autoencoder and the settings, never on the loop, the device count or the pool.
With a mask shard beside an image shard (inpainting), the masked images
x (1 - m) are encoded too and the masks resized to the latent (`encode_masked`).
`encode_shard_task` is one pool task: it loads the autoencoder once per worker
process (keyed by its folder and hash, so a changed model is loaded again).
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path

import numpy as np
import torch
from einops import rearrange

from ldm.autoencoder.checkpoint import load_autoencoder
from ldm.autoencoder.model import Autoencoder
from ldm.data.loader import to_tensor
from ldm.data.schema import KEY, LatentSample, MaskSample, RawSample, image_of
from ldm.data.shards import ShardInfo, read_shards, write_shard
from ldm.data.policies import OnCorrupt
from ldm.data.survey import Survey, survey
from ldm.errors import InvalidInput
from ldm.label_maps.pairing import attach_label_maps
from ldm.latents.config import LatentDtype, Posterior
from ldm.latents.encode import encode_latents
from ldm.masks.latent import latent_mask
from ldm.storage.settings import S3Settings


@dataclass(frozen=True)
class ShardJob:
    """One input shard, the name of its latent shard under the output folder and, for inpainting, the mask shard
    of the same name (the masks stage's, one mask per image in the same key order)."""

    source: str
    name: str  # "train-000000.tar" or "pairs/train-000000.tar"
    masks: str = ""  # "": no masks
    label_maps: str = ""  # the label-map shard zipped in by key (stage label_maps); "" = none


def usable_jobs(jobs: list[ShardJob], policy: OnCorrupt, surveyed: Collection[str] = ()) -> tuple[list[ShardJob], Survey]:
    """The jobs whose every input shard (image or pair, mask, label map) passes `ldm.data.survey` under `policy`
    (params `data.on_corrupt`), and the record for the report; InvalidInput when no job is left.

    `surveyed`: input URLs a survey already passed (read again, they would be counted twice).
    """
    inputs = {job.name: [url for url in (job.source, job.masks, job.label_maps) if url] for job in jobs}
    corrupt = survey([url for urls in inputs.values() for url in urls if url not in surveyed], policy)
    aside = {entry.shard for entry in corrupt.set_aside}
    kept = [job for job in jobs if aside.isdisjoint(inputs[job.name])]
    if jobs and not kept:
        raise InvalidInput(f"every input shard of cache_latents is corrupt (first: {corrupt.set_aside[0].reason})")
    return kept, corrupt


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


def read_shard_masks(source: str, keys: list[str], s3: S3Settings | None = None) -> torch.Tensor:
    """The masks [N x 1 x H x W] in {0, 1} of a mask shard that mirrors the image shard of `keys`; InvalidInput names
    the shard and the first key that differs."""
    masks = []
    for i, raw in enumerate(zip_longest(read_shards([source], s3), keys)):
        mask_raw, key = raw
        mask_key = mask_raw[KEY] if mask_raw is not None else None
        if mask_key != key:
            raise InvalidInput(f"{source}: mask {mask_key!r} where the image shard has image {key!r} (sample {i}); "
                               "re-run the masks stage on these images")
        masks.append(torch.from_numpy(MaskSample.decode(mask_raw).mask))
    return rearrange(torch.stack(masks), "n h w -> n 1 h w").float()


def encode_masked(model: Autoencoder, x: torch.Tensor, m: torch.Tensor, keys: list[str],
                  settings: EncodeSettings) -> tuple[np.ndarray, np.ndarray]:
    """Images x [N x 3 x H x W] in [-1, 1] and masks m [N x 1 x H x W] (1 = hole) on the model's device -> the latents
    [N x D x h x w] float32 of x (1 - m) (a hole reads 0, mid grey) and the masks at latent size [N x h x w] uint8."""
    if tuple(m.shape[-2:]) != tuple(x.shape[-2:]):
        raise InvalidInput(f"masks of {m.shape[-2]}x{m.shape[-1]} for images of {x.shape[-2]}x{x.shape[-1]} (shard of "
                           f"{keys[0]!r}); re-run the masks stage on these images")
    masked = encode_shard(model, x * (1 - m), keys, settings)  # (N, D, h, w), the posterior rule of `latent`
    small = latent_mask(m.cpu(), tuple(masked.shape[-2:]))  # (N, 1, h, w)
    return masked, rearrange(small, "n 1 h w -> n h w").to(torch.uint8).numpy()


def encode_shard(model: Autoencoder, x: torch.Tensor, keys: list[str], settings: EncodeSettings) -> np.ndarray:
    """x [N x 3 x H x W] on the model's device -> z [N x D x h x w] float32 on the CPU, `batch_size` per call."""
    step = settings.batch_size
    z = torch.cat([encode_latents(model, x[i : i + step], keys[i : i + step], posterior=settings.posterior, seed=settings.seed)
                   for i in range(0, len(keys), step)])  # (N, D, h, w)
    return z.cpu().numpy()


def write_latent_shard(path: Path, raws: list[RawSample], z: np.ndarray, settings: EncodeSettings,
                       masked: tuple[np.ndarray, np.ndarray] | None = None, label_maps: str = "",
                       s3: S3Settings | None = None) -> ShardInfo:
    """The latent shard at `path` (folders made): each raw sample with its latent, stored as `settings.dtype`;
    with `masked` (`encode_masked`'s latents and latent masks) its inpainting extras, and with its label map and
    layout when `label_maps` names the label-map shard (`s3`: its client settings)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    dtype = np.dtype(settings.dtype)
    extras = [{}] * len(raws) if masked is None else [{"masked": zm.astype(dtype), "mask": mask} for zm, mask in zip(*masked)]
    samples = (LatentSample.of_source(raw, latent.astype(dtype), autoencoder_sha256=settings.autoencoder_sha256, **extra)
               for raw, latent, extra in zip(raws, z, extras))
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
    keys = [raw[KEY] for raw in raws]
    z = encode_shard(model, x, keys, task.settings)
    masked = None
    if task.job.masks:
        masked = encode_masked(model, x, read_shard_masks(task.job.masks, keys, task.s3), keys, task.settings)
    return write_latent_shard(Path(task.out) / task.job.name, raws, z, task.settings, masked, task.job.label_maps, task.s3)
