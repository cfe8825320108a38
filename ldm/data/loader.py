"""Streaming shards into training batches.

Training shards are split by rank (`rank_shards`: rank r of W reads shards r,
r + W, ..., disjoint) once the ranks exist (`ShardData`), and samples pass through
a seeded shuffle buffer, so memory does not grow with the dataset and a run is
repeatable for a given seed and world size. `batch_loader` makes every
stage's DataLoader: decoding runs in its worker processes, and its batches are
the same, in the same order, whatever the number of workers (see its docstring).
A shard folder may be an s3:// prefix: its shards stream from the bucket
(`ldm.data.remote`), in the training process as in loader workers.
"""

from __future__ import annotations

import copy
import logging
import random
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import webdataset as wds
from einops import rearrange
from torch.utils.data import DataLoader, IterableDataset, default_collate, get_worker_info

from ldm.data.loader_config import LoaderSettings
from ldm.data.location import Location, name_of
from ldm.data.remote import ShardList, glob
from ldm.data.schema import ImageSample, RawSample
from ldm.data.tar_read import checked_tar_samples
from ldm.errors import InputNotFound, InvalidInput

log = logging.getLogger(__name__)


def shard_urls(folder: Location, split: str) -> list[str]:
    """The sorted `{split}-NNNNNN.tar` files of a shard folder (or of a bucket prefix); an error naming it when none."""
    urls = glob(folder, f"{split}-*.tar")
    if not urls:
        raise InputNotFound(f"{folder}: no {split}-*.tar shards; run the stage that writes them")
    return urls


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """[H x W x 3] uint8 -> [3 x H x W] float32 in [-1, 1]."""
    x = torch.tensor(image, dtype=torch.float32)  # a copy: read-only arrays (PIL's, mmap'd shards) are fine
    return rearrange(x, "h w c -> c h w") / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """[N x 3 x H x W] float in [-1, 1] -> [N x H x W x 3] uint8."""
    return rearrange(((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8), "n c h w -> n h w c").cpu().numpy()


def decode_image_label(raw: RawSample) -> tuple[torch.Tensor, int]:
    """A raw image sample -> (image [3 x H x W] in [-1, 1], class id)."""
    sample = ImageSample.decode(raw)
    return to_tensor(sample.image), sample.label


def rank_shards(urls: list[str], rank: int, world: int) -> list[str]:
    """Rank `rank` of `world`'s disjoint share of the shards: urls[rank::world]; an error when a rank would get none."""
    if len(urls) < world:
        raise InvalidInput(f"{len(urls)} training shards for {world} ranks: every rank needs at least one; lower"
                           " data.shard_size (more, smaller shards) or the number of devices")
    return urls[rank::world]


def raw_samples(urls: list[str], *, shuffle: int = 0, seed: int = 0, split_by_worker: bool = True) -> list:
    """The pipeline stages up to undecoded samples: these shards (this worker's share), optionally shuffled.

    `shuffle` > 0 shuffles shard order and samples in a buffer of that size, seeded. `batch_loader`
    takes the stages with `split_by_worker=False`: its workers share batches, not shards.
    """
    stages: list = [ShardList(urls)]  # carries the S3 settings into loader workers
    if shuffle:
        stages.append(wds.shuffle(len(urls), rng=random.Random(seed)))
    if split_by_worker:
        stages.append(wds.split_by_worker)
    stages.append(checked_tar_samples())
    if shuffle:
        stages.append(wds.shuffle(shuffle, initial=min(shuffle, 100), rng=random.Random(seed + 1)))
    return stages


def image_dataset(urls: list[str], *, shuffle: int = 0, seed: int = 0) -> wds.DataPipeline:
    """(image [3 x H x W] in [-1, 1], label) pairs from image shards (see `raw_samples` for the options)."""
    stages = raw_samples(urls, shuffle=shuffle, seed=seed)
    return wds.DataPipeline(*stages, wds.map(decode_image_label))


# ------------------------------------------------------------------ DataLoader


def loader_options(settings: LoaderSettings, *, persistent: bool = False) -> dict[str, Any]:
    """DataLoader keywords of `settings`: prefetch only with workers, pinned memory only with CUDA.

    Workers start by `forkserver`, not `fork`: a training process that runs threads (Prefect's
    server, Lightning's loggers) cannot be forked safely, and a forked worker of one dies at start.
    """
    workers = settings.num_workers
    return {
        "num_workers": workers,
        "multiprocessing_context": "forkserver" if workers else None,
        "prefetch_factor": settings.prefetch_factor if workers else None,
        "pin_memory": settings.pin_memory and torch.cuda.is_available(),
        "persistent_workers": persistent and workers > 0,
    }


class _TakeTurns(IterableDataset):
    """Raw batches of one seeded stream; worker w of W decodes and collates batch k iff k % W == w."""

    def __init__(self, batches: wds.DataPipeline, decode: Callable[[RawSample], Any], collate: Callable[[list], Any]):
        super().__init__()
        self.batches, self.decode, self.collate = batches, decode, collate
        self.skip = 0  # leading batches passed over undecoded (`ShardData` sets it on a resumed run)

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        # A fresh copy: every pass starts from the seeds, in the main process as in a worker's copy.
        batches = copy.deepcopy(self.batches)
        for k, raws in enumerate(batches):  # k counts across repeats: the turns never restart
            if k >= self.skip and (k - self.skip) % workers == worker:  # worker 0 yields the first batch kept
                yield self.collate([self.decode(raw) for raw in raws])


def batch_loader(raw: list, decode: Callable[[RawSample], Any], *, batch_size: int, settings: LoaderSettings,
                 collate: Callable[[list], Any] = default_collate, endless: bool = False) -> DataLoader:
    """A DataLoader of collated batches of `decode`d samples whose order does not depend on the worker count.

    `raw`: pipeline stages up to undecoded samples (`raw_samples(..., split_by_worker=False)`). Every
    worker walks the same seeded shard order and shuffle buffer over the raw samples (tar reads, no
    decoding) and groups them into batches; worker w of W decodes (PNG, npy, to_tensor) and collates
    only batches k = w, w + W, ..., and the DataLoader, which takes one batch from each worker in
    turn, yields exactly the sequence of 0 workers. The trade-off: each worker reads every raw byte
    of its node's shards and holds its own shuffle buffer of raw samples; decoding, the expensive
    part, is split. Ranks split at the shard level (`rank_shards`) before this.

    `endless` repeats the shards forever (the shuffles continue from epoch to epoch), drops each
    pass's partial last batch and keeps the workers alive; otherwise one pass, the last batch partial.
    Every `iter()` of the loader starts the same sequence again.
    """
    if wds.split_by_worker in raw:
        raise ValueError("batch_loader splits batches between workers; build `raw` with split_by_worker=False")
    batches = wds.DataPipeline(*raw, wds.batched(batch_size, collation_fn=None, partial=not endless))
    if endless:
        batches = batches.repeat()
    return DataLoader(_TakeTurns(batches, decode, collate), batch_size=None, **loader_options(settings, persistent=endless))


def image_loader(urls: list[str], *, batch_size: int, settings: LoaderSettings, shuffle: int = 0, seed: int = 0,
                 endless: bool = False) -> DataLoader:
    """Batches [images [N x 3 x H x W] in [-1, 1], labels [N]] of image shards (see `batch_loader`, `raw_samples`)."""
    raw = raw_samples(urls, shuffle=shuffle, seed=seed, split_by_worker=False)
    return batch_loader(raw, decode_image_label, batch_size=batch_size, settings=settings, endless=endless)


DRAWN = "batches_drawn"  # the buffer of a training module that counts the batches its training_step was given


class ShardData(pl.LightningDataModule):
    """A training stage's loaders, built once the ranks exist: rank r of W trains on `rank_shards(train, r, W)`;
    every rank validates on all val shards, so the val loss is the same on any world size.

    `make_loader(urls, train)` builds one DataLoader (endless and shuffled when `train`, from `batch_loader`).
    A module with a `DRAWN` buffer, restored from a checkpoint, resumes its stream there: the batches it
    already had are passed over undecoded, so a killed run resumes to the data order of a whole one.
    """

    def __init__(self, train: list[str], val: list[str], make_loader: Callable[[list[str], bool], DataLoader]):
        super().__init__()
        self.train, self.val, self.make_loader = train, val, make_loader

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        mine = rank_shards(self.train, rank, world)
        if world > 1:
            log.info("rank %d of %d trains on %d shards: %s", rank, world, len(mine), ",".join(map(name_of, mine)))
        loader = self.make_loader(mine, True)
        drawn = int(getattr(trainer.lightning_module, DRAWN, 0)) if trainer is not None else 0
        if drawn:
            assert isinstance(loader.dataset, _TakeTurns), "a resumable training loader comes from batch_loader"
            loader.dataset.skip = drawn
            log.info("resuming the training stream after its first %d batches", drawn)
        return loader

    def val_dataloader(self) -> DataLoader:
        return self.make_loader(self.val, False)
