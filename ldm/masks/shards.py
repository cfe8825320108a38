"""Mask shards beside image shards: one mask per image, the same shard names, the same key order.

`write_mask_shard` is one task of the masks stage: it reads an image shard,
draws each image's mask from the seed of (params seed, sample key) and writes
the mask shard of the same name. `zip_masks` reads images and masks back
together by key; `masked_image` is what the inpainting model's condition hides.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import islice, zip_longest
from pathlib import Path

import numpy as np
from einops import repeat

from ldm.data.schema import KEY, ImageSample, MaskSample
from ldm.data.shards import ShardInfo, read_shards, write_shard
from ldm.errors import InvalidInput
from ldm.masks.config import KINDS, MaskConfig
from ldm.masks.generator import MaskRecord, draw_mask
from ldm.reports import quantiles
from ldm.seeding import key_seed

HOLE_FILL = 127  # uint8 grey: the reference conditions on (1 - mask) * x with x in [-1, 1], so a hole reads 0, mid grey


@dataclass(frozen=True)
class MaskJob:
    """One task: the image shard to read, the mask shard to write, the generator and the params seed."""

    source: str
    out: str
    config: MaskConfig
    seed: int


@dataclass(frozen=True)
class ShardMasks:
    """What one task wrote: the shard and each mask's record, in key order."""

    shard: ShardInfo
    records: tuple[MaskRecord, ...]


def mask_of(key: str, size: tuple[int, int], config: MaskConfig, seed: int) -> MaskSample:
    """The mask [H x W] of the image `key` of `size` (H, W), seeded by (params seed, key)."""
    mask, record = draw_mask(*size, config, key_seed(seed, key))
    how = {"seed": record.seed, "attempts": record.attempts, "adjusted": record.adjusted}
    return MaskSample(key=key, mask=mask, kind=record.kind, coverage=record.coverage, meta=how)


def write_mask_shard(job: MaskJob) -> ShardMasks:
    """Draw the mask of every image of `job.source`, in order, into the mask shard `job.out`."""
    records: list[MaskRecord] = []

    def samples() -> Iterator[MaskSample]:
        for raw in read_shards([job.source]):
            sample = mask_of(raw[KEY], ImageSample.size_of(raw), job.config, job.seed)
            records.append(MaskRecord(kind=sample.kind, coverage=sample.coverage, **sample.meta))
            yield sample

    return ShardMasks(write_shard(job.out, samples()), tuple(records))


def summarize(records: Sequence[MaskRecord]) -> dict:
    """The report's view of many masks: count and share per kind, coverage quantiles overall and per kind."""
    counts = Counter(record.kind for record in records)
    total = max(len(records), 1)
    return {
        "kinds": {kind: counts[kind] for kind in KINDS},
        "kind_shares": {kind: round(counts[kind] / total, 4) for kind in KINDS},
        "coverage": quantiles([record.coverage for record in records]),
        "coverage_by_kind": {kind: quantiles([r.coverage for r in records if r.kind == kind]) for kind in KINDS},
        "adjusted": sum(record.adjusted for record in records),
        "mean_attempts": round(float(np.mean([record.attempts for record in records])), 4) if records else 0.0,
    }


def zip_masks(images: Sequence[str | Path], masks: Sequence[str | Path]) -> Iterator[tuple[ImageSample, MaskSample]]:
    """(image, mask) of shards written side by side; a key that differs is an error naming both shards."""
    if [Path(p).name for p in images] != [Path(p).name for p in masks]:
        raise InvalidInput(f"mask shards {[Path(p).name for p in masks]} are not the image shards "
                           f"{[Path(p).name for p in images]}; re-run the masks stage on these images")
    for image_shard, mask_shard in zip(images, masks):
        for image_raw, mask_raw in zip_longest(read_shards([image_shard]), read_shards([mask_shard])):
            image_key, mask_key = (raw[KEY] if raw else None for raw in (image_raw, mask_raw))
            if image_key != mask_key:
                raise InvalidInput(f"{mask_shard}: mask {mask_key!r} where {image_shard} has image {image_key!r}; "
                                   "re-run the masks stage on these images")
            yield ImageSample.decode(image_raw), MaskSample.decode(mask_raw)


def masked_image(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """[H x W x 3] uint8 image, [H x W] mask -> the image with its holes grey."""
    return np.where(mask[..., None].astype(bool), np.uint8(HOLE_FILL), image)


def grid_columns(pairs: Iterator[tuple[ImageSample, MaskSample]], count: int, total: int) -> tuple[dict, list[str]]:
    """`count` (image, mask) pairs spread over `total` -> columns image | mask | masked ([N x H x W x 3] uint8 each)
    and a label per row (kind and coverage)."""
    chosen = list(islice(islice(pairs, 0, None, max(1, total // count)), count))
    as_rgb = lambda mask: repeat(mask * np.uint8(255), "h w -> h w c", c=3)  # noqa: E731 - holes white
    columns = {
        "image": np.stack([image.image for image, _ in chosen]),
        "mask": np.stack([as_rgb(mask.mask) for _, mask in chosen]),
        "masked": np.stack([masked_image(image.image, mask.mask) for image, mask in chosen]),
    }
    return columns, [f"{mask.kind} {mask.coverage:.0%}" for _, mask in chosen]
