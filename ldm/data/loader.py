"""Streaming shards into training batches.

Shards are split by DDP rank and DataLoader worker (webdataset's splitters), and
samples pass through a seeded shuffle buffer, so memory does not grow with the
dataset and a run is repeatable for a given seed and world size.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
import webdataset as wds
from einops import rearrange

from ldm.data.schema import ImageSample
from ldm.errors import InputNotFound


def shard_urls(folder: str | Path, split: str) -> list[str]:
    """The sorted `{split}-NNNNNN.tar` files of a shard folder; an error naming the folder when none."""
    urls = sorted(str(path) for path in Path(folder).glob(f"{split}-*.tar"))
    if not urls:
        raise InputNotFound(f"{folder}: no {split}-*.tar shards; run the stage that writes them")
    return urls


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """[H x W x 3] uint8 -> [3 x H x W] float32 in [-1, 1]."""
    return rearrange(torch.from_numpy(np.ascontiguousarray(image)), "h w c -> c h w").float() / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """[N x 3 x H x W] float in [-1, 1] -> [N x H x W x 3] uint8."""
    return rearrange(((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8), "n c h w -> n h w c").cpu().numpy()


def _image_label(sample: ImageSample) -> tuple[torch.Tensor, int]:
    return to_tensor(sample.image), sample.label


def raw_samples(urls: list[str], *, shuffle: int = 0, seed: int = 0, split_by_node: bool = True) -> list:
    """The pipeline stages up to undecoded samples: this node's and worker's shards, optionally shuffled.

    `shuffle` > 0 shuffles shard order and samples in a buffer of that size, seeded.
    """
    stages: list = [wds.SimpleShardList(urls)]
    if shuffle:
        stages.append(wds.shuffle(len(urls), rng=random.Random(seed)))
    if split_by_node:
        stages.append(wds.split_by_node)
    stages += [wds.split_by_worker, wds.tarfile_to_samples()]
    if shuffle:
        stages.append(wds.shuffle(shuffle, initial=min(shuffle, 100), rng=random.Random(seed + 1)))
    return stages


def image_dataset(urls: list[str], *, shuffle: int = 0, seed: int = 0, split_by_node: bool = True) -> wds.DataPipeline:
    """(image [3 x H x W] in [-1, 1], label) pairs from image shards (see `raw_samples` for the options)."""
    stages = raw_samples(urls, shuffle=shuffle, seed=seed, split_by_node=split_by_node)
    return wds.DataPipeline(*stages, wds.map(ImageSample.decode), wds.map(_image_label))
