"""Label-map shards beside image shards: one label map and layout per image, same shard names, same key order.

`write_label_map_shard` is one task of stage label_maps: it reads an image
shard and writes the label-map shard of the same name (`LabelMapSample`s);
`ldm.label_maps.pairing` reads them back beside their images.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from threadpoolctl import threadpool_limits

from ldm.data.label_maps import IGNORE_INDEX, LABEL_MAP_EXTENSION, crop_resize_label_map, read_label_map
from ldm.data.schema import ImageSample, LabelMapSample
from ldm.data.shards import ShardInfo, read_shards, write_shard
from ldm.data.stand_in_maps import stand_in_label_map
from ldm.errors import InvalidInput
from ldm.label_maps.boxes import dataset_layout, stand_in_layout
from ldm.label_maps.config import LabelMapConfig
from ldm.seeding import key_seed

FOLDER_SOURCE = "folder:"  # the prefix of an image's meta "source" when download read it from a folder


@dataclass(frozen=True)
class LabelMapJob:
    """One task: the image shard to read, the label-map shard to write, where maps and boxes come from."""

    source: str
    out: str
    config: LabelMapConfig


@dataclass(frozen=True)
class LabelMapRecord:
    """What the report counts of one map: its key, the class ids it holds, its unlabelled share, its boxes."""

    key: str
    classes: tuple[int, ...]
    unlabelled: float
    boxes: int


@dataclass(frozen=True)
class ShardLabelMaps:
    """What one task wrote: the shard and each map's record, in key order."""

    shard: ShardInfo
    records: tuple[LabelMapRecord, ...]


def _crop_of(image: ImageSample) -> tuple[str, tuple[int, int], tuple[int, int, int]]:
    """(path below the download folder, original (H0, W0), crop window (top, left, size)) of a folder image."""
    source, meta = image.meta.get("source", ""), image.meta
    if not source.startswith(FOLDER_SOURCE) or "crop_box" not in meta or "original_size" not in meta:
        raise InvalidInput(f"image {image.key}: source {source!r} is not a folder image with a crop_box; "
                           "label_maps.source folder needs download.source folder")
    top, left, height, width = meta["crop_box"]
    if height != width:
        raise InvalidInput(f"image {image.key}: crop_box {meta['crop_box']} is not square")
    return source.removeprefix(FOLDER_SOURCE), tuple(meta["original_size"]), (top, left, height)


def _folder_map(image: ImageSample, config: LabelMapConfig) -> np.ndarray:
    """The folder's map of this image, cut with the image's crop window and resized to its resolution."""
    relpath, original, window = _crop_of(image)
    path = Path(config.folder) / PurePosixPath(relpath).with_suffix(LABEL_MAP_EXTENSION)
    if not path.is_file():
        raise InvalidInput(f"{path}: no label map for image {relpath!r}; put a PNG of the same stem in {config.folder}")
    full = read_label_map(path, config.label_format())
    if full.shape != original:
        raise InvalidInput(f"{path}: label map is {full.shape[0]}x{full.shape[1]} (HxW) but its image "
                           f"{relpath!r} is {original[0]}x{original[1]}; a map must have its image's size")
    return crop_resize_label_map(full, window, image.image.shape[0])


def _stand_in(image: np.ndarray, config: LabelMapConfig, seed: int) -> np.ndarray:
    """The stand-in map of n_regions; of fewer where the crop has too few colours to fill them (a flat crop)."""
    for regions in range(config.n_regions, 1, -1):
        try:
            return stand_in_label_map(image, regions, seed, config.position_weight)
        except InvalidInput:
            continue
    return np.zeros(image.shape[:2], dtype=np.int64)  # a single colour: one region


def label_map_of(image: ImageSample, config: LabelMapConfig) -> LabelMapSample:
    """The label map [H x W] and layout of one image sample, per `config` (stand-in maps seeded by seed and key)."""
    meta: dict = {"source": "stand-in" if config.stand_in else "folder", "n_classes": config.map_classes,
                  "boxes": config.boxes}
    if config.stand_in:
        seed = key_seed(config.seed, image.key)
        label_map = _stand_in(image.image, config, seed)
        meta.update(seed=seed, regions=int(label_map.max()) + 1)
    else:
        label_map = _folder_map(image, config)
    if config.boxes == "label_map":
        layout = stand_in_layout(label_map, image.key, config.min_area)
    else:
        relpath, original, window = _crop_of(image)
        layout = dataset_layout(config, relpath, image.key, original, window, label_map.shape[0])
    return LabelMapSample(key=image.key, label_map=label_map, layout=layout, meta=meta)


def write_label_map_shard(job: LabelMapJob) -> ShardLabelMaps:
    """The label map of every image of `job.source`, in order, into the label-map shard `job.out`."""
    records: list[LabelMapRecord] = []

    def samples() -> Iterator[LabelMapSample]:
        # One thread per task: k-means over 64x64 crops took 13 ms on one OpenMP thread and 184 ms on two
        # contended ones; tasks run in parallel instead.
        for raw in read_shards([job.source]):
            sample = label_map_of(ImageSample.decode(raw), job.config)
            ids = np.unique(sample.label_map)
            records.append(LabelMapRecord(key=sample.key, classes=tuple(int(i) for i in ids if i != IGNORE_INDEX),
                                          unlabelled=float(np.mean(sample.label_map == IGNORE_INDEX)),
                                          boxes=len(sample.layout.boxes)))
            yield sample

    with threadpool_limits(limits=1):
        return ShardLabelMaps(write_shard(job.out, samples()), tuple(records))
