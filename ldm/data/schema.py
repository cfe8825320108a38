"""The shard schema: every field of a webdataset sample, how it is encoded, and the typed samples of each stage.

A sample is the tar members `{key}.{field}`. This module is the only place a
field name is written; stages and loaders use the typed samples below.

| field        | sample kinds             | holds                                                   |
|--------------|--------------------------|---------------------------------------------------------|
| `png`        | image                    | the image, [H x W x 3] uint8 RGB as PNG                 |
| `hr.png`     | pair                     | the high-resolution image the LR one was made from (PNG) |
| `lr.png`     | pair, latent (SR pairs)  | the degraded low-resolution image (PNG)                 |
| `latent.npy` | latent                   | the autoencoder's latent [C x h x w], unscaled, `.npy`  |
| `mask.png`   | mask                     | the inpainting mask [H x W], 1 = hole, as a 1-bit PNG   |
| `seg.png`    | label map, latent        | the label map [H x W], 16-bit PNG of id + 1 (0: unlabelled) |
| `layout.json`| label map, latent        | the boxes of the image, `ldm.data.layouts.Layout` JSON  |
| `cls`        | all but mask             | class id, ASCII decimal                                 |
| `txt`        | all but mask             | caption, UTF-8                                          |
| `json`       | all                      | metadata, canonical JSON (sorted keys, no spaces)       |

A mask sample has the key of the image it belongs to and lies in the mask shard
of the same name as the image's shard, in the same order: the two zip by key.
A label map sample lies beside its image the same way.

Keys carry no dot (webdataset splits the member name at the first one).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Protocol

import numpy as np
from PIL import Image

from ldm.data.images import encode_png
from ldm.data.label_maps import decode_stored_label_map, encode_label_map
from ldm.data.layouts import Layout

KEY = "__key__"  # webdataset's name for the sample key


class Field(StrEnum):
    """The tar member suffixes of a sample."""

    IMAGE = "png"
    HR = "hr.png"
    LR = "lr.png"
    LATENT = "latent.npy"
    MASK = "mask.png"
    SEG = "seg.png"
    LAYOUT = "layout.json"
    LABEL = "cls"
    CAPTION = "txt"
    META = "json"


def encode_json(obj: object) -> bytes:
    """Canonical JSON bytes (sorted keys, no spaces) so equal metadata hashes equally."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes of a shard -> [H x W x 3] uint8 RGB (the shards hold RGB PNGs written by `encode_png`)."""
    with Image.open(io.BytesIO(data)) as image:
        return np.array(image.convert("RGB"))  # writable: torch.from_numpy warns on read-only arrays


def png_size(data: bytes) -> tuple[int, int]:
    """(H, W) of PNG bytes, read from the header without decoding the pixels."""
    with Image.open(io.BytesIO(data)) as image:
        return image.height, image.width


def encode_npy(array: np.ndarray) -> bytes:
    """An array as `.npy` bytes (no pickle)."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def decode_npy(data: bytes) -> np.ndarray:
    """`.npy` bytes -> the array; pickled objects are refused."""
    return np.load(io.BytesIO(data), allow_pickle=False)


def encode_mask(mask: np.ndarray) -> bytes:
    """[H x W] uint8 mask (1 = hole) -> 1-bit PNG bytes (holes white in a viewer; same pixels give the same bytes)."""
    buffer = io.BytesIO()
    Image.fromarray(mask.astype(bool)).save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def decode_mask(data: bytes) -> np.ndarray:
    """PNG bytes of a mask -> [H x W] uint8, 1 = hole."""
    with Image.open(io.BytesIO(data)) as image:
        return (np.array(image.convert("L")) > 0).astype(np.uint8)


RawSample = dict[str, Any]  # `__key__` plus undecoded fields, as a tar reader yields them


class Sample(Protocol):
    """What a shard writer takes: a typed sample that encodes itself."""

    key: str

    def encode(self) -> RawSample: ...


def _common(raw: RawSample) -> dict[str, Any]:
    """The fields every sample kind has: key, label, caption, metadata."""
    meta = json.loads(raw[Field.META]) if Field.META in raw else {}
    return {"key": raw[KEY], "label": int(raw[Field.LABEL]), "caption": raw[Field.CAPTION].decode(), "meta": meta}


def _encode_common(sample: ImageSample | PairSample | LatentSample) -> RawSample:
    return {KEY: sample.key, Field.LABEL.value: str(sample.label).encode(), Field.CAPTION.value: sample.caption.encode(),
            Field.META.value: encode_json(sample.meta)}


def require(raw: RawSample, *fields: Field) -> None:
    """Raise KeyError naming the first missing field (the caller names the shard and key)."""
    for name in fields:
        if name not in raw:
            raise KeyError(f"has no {name.value!r} field")


@dataclass(frozen=True)
class ImageSample:
    """A dataset image (stage download): image [H x W x 3] uint8, class id, caption, metadata."""

    FIELDS: ClassVar[tuple[Field, ...]] = (Field.IMAGE, Field.LABEL, Field.CAPTION)

    key: str
    image: np.ndarray
    label: int
    caption: str
    meta: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> RawSample:
        """Tar member bytes by field."""
        return {**_encode_common(self), Field.IMAGE.value: encode_png(self.image)}

    @classmethod
    def decode(cls, raw: RawSample) -> ImageSample:
        """A tar sample -> ImageSample."""
        require(raw, *cls.FIELDS)
        return cls(image=decode_png(raw[Field.IMAGE]), **_common(raw))

    @classmethod
    def size_of(cls, raw: RawSample) -> tuple[int, int]:
        """(H, W) of a tar sample's image, its pixels left undecoded."""
        require(raw, *cls.FIELDS)
        return png_size(raw[Field.IMAGE])


@dataclass(frozen=True)
class PairSample:
    """A super-resolution pair (stage degrade): HR [H x W x 3] and LR [H/s x W/s x 3] uint8, plus the source's fields."""

    FIELDS: ClassVar[tuple[Field, ...]] = (Field.HR, Field.LR, Field.LABEL, Field.CAPTION)

    key: str
    hr: np.ndarray
    lr: np.ndarray
    label: int
    caption: str
    meta: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> RawSample:
        """Tar member bytes by field."""
        return {**_encode_common(self), Field.HR.value: encode_png(self.hr), Field.LR.value: encode_png(self.lr)}

    @classmethod
    def decode(cls, raw: RawSample) -> PairSample:
        """A tar sample -> PairSample."""
        require(raw, *cls.FIELDS)
        return cls(hr=decode_png(raw[Field.HR]), lr=decode_png(raw[Field.LR]), **_common(raw))


@dataclass(frozen=True)
class LatentSample:
    """A cached latent (stage cache_latents): latent [C x h x w] unscaled, the LR image for SR pairs, the source's fields."""

    FIELDS: ClassVar[tuple[Field, ...]] = (Field.LATENT, Field.LABEL, Field.CAPTION)

    key: str
    latent: np.ndarray
    label: int
    caption: str
    meta: dict[str, Any] = field(default_factory=dict)
    lr: np.ndarray | None = None
    label_map: np.ndarray | None = None  # [H x W] ids at image resolution (stage label_maps), IGNORE_INDEX unlabelled
    layout: Layout | None = None  # the image's boxes (stage label_maps)

    def encode(self) -> RawSample:
        """Tar member bytes by field."""
        raw = {**_encode_common(self), Field.LATENT.value: encode_npy(self.latent)}
        if self.lr is not None:
            raw[Field.LR.value] = encode_png(self.lr)
        raw.update(_encode_label_map_fields(self.label_map, self.layout))
        return raw

    @classmethod
    def decode(cls, raw: RawSample) -> LatentSample:
        """A tar sample -> LatentSample."""
        require(raw, *cls.FIELDS)
        lr = decode_png(raw[Field.LR]) if Field.LR in raw else None
        return cls(latent=decode_npy(raw[Field.LATENT]), lr=lr, **_common(raw), **_decode_label_map_fields(raw))

    @classmethod
    def of_source(cls, raw: RawSample, latent: np.ndarray, **meta: Any) -> LatentSample:
        """The latent of an image or pair sample: its class, caption, metadata (plus `meta`) and a pair's LR image
        carried over; the source image itself is not decoded again."""
        common = _common(raw)
        lr = decode_png(raw[Field.LR]) if Field.LR in raw else None
        return cls(latent=latent, lr=lr, **{**common, "meta": {**common["meta"], **meta}})

    @staticmethod
    def decode_latent(raw: RawSample) -> np.ndarray:
        """Only the latent of a tar sample (statistics read nothing else)."""
        require(raw, Field.LATENT)
        return decode_npy(raw[Field.LATENT])


@dataclass(frozen=True)
class MaskSample:
    """An inpainting mask (stage masks): mask [H x W] uint8 (1 = hole) of the image with this key, its kind and the
    fraction of the image it hides; `meta` holds how it was drawn (seed, attempts)."""

    FIELDS: ClassVar[tuple[Field, ...]] = (Field.MASK, Field.META)

    key: str
    mask: np.ndarray
    kind: str
    coverage: float
    meta: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> RawSample:
        """Tar member bytes by field; kind and coverage are keys of the metadata."""
        meta = {**self.meta, "kind": self.kind, "coverage": self.coverage}
        return {KEY: self.key, Field.MASK.value: encode_mask(self.mask), Field.META.value: encode_json(meta)}

    @classmethod
    def decode(cls, raw: RawSample) -> MaskSample:
        """A tar sample -> MaskSample."""
        require(raw, *cls.FIELDS)
        meta = json.loads(raw[Field.META])
        kind, coverage = meta.pop("kind"), meta.pop("coverage")
        return cls(key=raw[KEY], mask=decode_mask(raw[Field.MASK]), kind=kind, coverage=coverage, meta=meta)


def _encode_label_map_fields(label_map: np.ndarray | None, layout: Layout | None) -> RawSample:
    """`seg.png` and `layout.json` of the ones given."""
    raw: RawSample = {}
    if label_map is not None:
        raw[Field.SEG.value] = encode_label_map(label_map)
    if layout is not None:
        raw[Field.LAYOUT.value] = encode_json(layout.to_dict())
    return raw


def _decode_label_map_fields(raw: RawSample) -> dict[str, Any]:
    """{"label_map", "layout"} of a tar sample, None where absent."""
    label_map = decode_stored_label_map(raw[Field.SEG]) if Field.SEG in raw else None
    layout = Layout.from_dict(json.loads(raw[Field.LAYOUT])) if Field.LAYOUT in raw else None
    return {"label_map": label_map, "layout": layout}


@dataclass(frozen=True)
class LabelMapSample:
    """A label map and layout (stage label_maps): label_map [H x W] int64 ids of the image with this key, at its
    resolution (IGNORE_INDEX unlabelled), its boxes, and `meta` (where the map and boxes came from)."""

    FIELDS: ClassVar[tuple[Field, ...]] = (Field.SEG, Field.LAYOUT, Field.META)

    key: str
    label_map: np.ndarray
    layout: Layout
    meta: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> RawSample:
        """Tar member bytes by field."""
        return {KEY: self.key, **_encode_label_map_fields(self.label_map, self.layout),
                Field.META.value: encode_json(self.meta)}

    @classmethod
    def decode(cls, raw: RawSample) -> LabelMapSample:
        """A tar sample -> LabelMapSample."""
        require(raw, *cls.FIELDS)
        return cls(key=raw[KEY], meta=json.loads(raw[Field.META]), **_decode_label_map_fields(raw))


def image_of(raw: RawSample) -> np.ndarray:
    """The image an encoder sees in a sample: `png` of an image sample, `hr.png` of a pair."""
    for name in (Field.IMAGE, Field.HR):
        if name in raw:
            return decode_png(raw[name])
    raise KeyError(f"has neither a {Field.IMAGE.value!r} nor a {Field.HR.value!r} field")
