"""Label-map shards read back beside their image (or latent) samples: the same shard names, the same keys in order."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from itertools import zip_longest
from pathlib import Path

from ldm.data.schema import KEY, ImageSample, LabelMapSample, LatentSample
from ldm.data.shards import read_shards
from ldm.errors import InvalidInput
from ldm.storage.settings import S3Settings


def _zip(left: Iterable[dict], right: Iterable[dict], left_shard: str, right_shard: str) -> Iterator[tuple[dict, dict]]:
    """Raw samples of two shards written side by side; a key that differs is an error naming both shards."""
    for a, b in zip_longest(left, right):
        key_a, key_b = (raw[KEY] if raw else None for raw in (a, b))
        if key_a != key_b:
            raise InvalidInput(f"{right_shard}: label map {key_b!r} where {left_shard} has {key_a!r}; "
                               "re-run the label_maps stage on these images (dvc repro label_maps)")
        yield a, b


def zip_label_maps(images: Sequence[str | Path], maps: Sequence[str | Path]) -> Iterator[tuple[ImageSample, LabelMapSample]]:
    """(image, label map) of shards written side by side, in order."""
    if [Path(p).name for p in images] != [Path(p).name for p in maps]:
        raise InvalidInput(f"label-map shards {[Path(p).name for p in maps]} are not the image shards "
                           f"{[Path(p).name for p in images]}; re-run the label_maps stage on these images")
    for image_shard, map_shard in zip(images, maps):
        for image_raw, map_raw in _zip(read_shards([image_shard]), read_shards([map_shard]), str(image_shard), str(map_shard)):
            yield ImageSample.decode(image_raw), LabelMapSample.decode(map_raw)


def attach_label_maps(samples: Iterable[LatentSample], shard: str, s3: S3Settings | None = None) -> Iterator[LatentSample]:
    """Each latent sample with the label map and layout of the same key from the label-map `shard`
    (`s3`: the client settings of an s3:// shard read in another process than the stage's)."""
    as_raw = ({KEY: sample.key, "sample": sample} for sample in samples)
    for latent, raw in _zip(as_raw, read_shards([shard], s3), "its image shard", shard):
        found = LabelMapSample.decode(raw)
        yield replace(latent["sample"], label_map=found.label_map, layout=found.layout)
