"""Semantic label maps for semantic-map-to-image synthesis (Sec. 4.3.2): formats, reading, pairing, cropping.

A label map is a single-channel PNG of class indices, one per pixel, the same
size as its image. Datasets write raw values differently; a `LabelMapFormat`
says how a raw value becomes a class id:

    class id = raw + offset       for every raw value other than `ignore_raw`
    IGNORE_INDEX                  where raw == ignore_raw (unlabelled)

Presets:
- COCO-Stuff (182-class convention, as in the released semantic model): raw
  0..181 are the class ids (thing classes 0..90, stuff 91..181), 255 is
  unlabelled; offset 0.
- ADE20K SceneParsing: raw 0 is "other"/unlabelled, raw 1..150 are the classes;
  offset -1 gives ids 0..149.

Read maps are [H x W] int64 arrays with ids in 0..n_classes-1 or IGNORE_INDEX.
Crops reuse the image crop boxes (top, left, size) of `ldm.data.images`, resized
nearest-neighbour so no pixel gets a class that is not in the map.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

from ldm.config import Config
from ldm.data.images import IMAGE_EXTENSIONS
from ldm.errors import InvalidInput

IGNORE_INDEX = -1  # class id of unlabelled pixels in every read map; one_hot gives them all-zero vectors
LABEL_MAP_EXTENSION = ".png"  # lossless: JPEG would invent ids at region borders
_SINGLE_CHANNEL_MODES = ("L", "P", "I;16", "I;16B", "I;16L", "I")
_LISTED = 5  # names or values quoted in a one-line error

PairingPolicy = Literal["strict", "intersect"]


@dataclass(frozen=True)
class LabelMapFormat(Config):
    """How raw PNG values map to class ids: id = raw + offset, raw == ignore_raw is unlabelled."""

    section = "label_maps"

    name: str
    n_classes: int
    ignore_raw: int
    offset: int

    def __post_init__(self) -> None:
        if self.n_classes < 1:
            raise ValueError(f"{self.section}.n_classes must be at least 1, got {self.n_classes}")
        if self.first_raw <= self.ignore_raw <= self.last_raw:
            raise ValueError(f"{self.section}.ignore_raw {self.ignore_raw} lies among the class values "
                             f"{self.first_raw}..{self.last_raw}")

    @property
    def first_raw(self) -> int:
        """The raw value of class id 0."""
        return -self.offset

    @property
    def last_raw(self) -> int:
        """The raw value of class id n_classes - 1."""
        return self.n_classes - 1 - self.offset

    def allowed(self) -> str:
        """The raw values a map of this format may hold, in words."""
        return f"{self.first_raw}..{self.last_raw} or {self.ignore_raw} (unlabelled) for {self.name}"


COCO_STUFF = LabelMapFormat(name="coco-stuff", n_classes=182, ignore_raw=255, offset=0)
ADE20K = LabelMapFormat(name="ade20k", n_classes=150, ignore_raw=0, offset=-1)
LABEL_MAP_FORMATS: dict[str, LabelMapFormat] = {fmt.name: fmt for fmt in (COCO_STUFF, ADE20K)}


def label_map_format(name: str) -> LabelMapFormat:
    """The named preset; an unknown name is an error listing the presets."""
    if name not in LABEL_MAP_FORMATS:
        raise InvalidInput(f"label map format {name!r} is unknown; choose one of {sorted(LABEL_MAP_FORMATS)}")
    return LABEL_MAP_FORMATS[name]


# ----------------------------------------------------------------------------- reading

def raw_to_ids(raw: np.ndarray, fmt: LabelMapFormat, source: str) -> np.ndarray:
    """[H x W] raw values -> [H x W] int64 class ids (IGNORE_INDEX where unlabelled); `source` names the input in errors."""
    raw = raw.astype(np.int64)
    ignored = raw == fmt.ignore_raw
    bad = np.unique(raw[~ignored & ((raw < fmt.first_raw) | (raw > fmt.last_raw))])
    if bad.size:
        raise InvalidInput(f"{source}: values {bad[:_LISTED].tolist()}{' ...' if bad.size > _LISTED else ''} are out "
                           f"of range; allowed are {fmt.allowed()}")
    return np.where(ignored, IGNORE_INDEX, raw + fmt.offset)


def decode_label_map(data: bytes, fmt: LabelMapFormat, source: str) -> np.ndarray:
    """Single-channel PNG bytes -> [H x W] int64 class ids; palette PNGs are read as their indices."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidInput(f"{source}: not a readable PNG ({exc}); a label map is a single-channel PNG") from None
    if image.format != "PNG":
        raise InvalidInput(f"{source}: is {image.format}, a label map must be a PNG (lossless) of class indices")
    if image.mode not in _SINGLE_CHANNEL_MODES:
        raise InvalidInput(f"{source}: mode {image.mode} has {len(image.getbands())} channels; a label map is one "
                           f"channel of class indices (mode L, or P read as palette indices), not colours")
    return raw_to_ids(np.asarray(image), fmt, source)


def read_label_map(path: str | Path, fmt: LabelMapFormat) -> np.ndarray:
    """A label map PNG -> [H x W] int64 class ids in 0..n_classes-1, IGNORE_INDEX where unlabelled."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot be read ({exc.strerror or exc}); a label map is a single-channel PNG") from None
    return decode_label_map(data, fmt, str(path))


# ----------------------------------------------------------------------------- pairing

@dataclass(frozen=True)
class LabelMapPair(Config):
    """One image and its label map, matched by the path below their folders without the extension."""

    section = "label_map_pair"

    key: str
    image: str
    label_map: str


@dataclass(frozen=True)
class Pairing(Config):
    """The images matched with label maps, and what was left unmatched (only under the `intersect` policy)."""

    section = "pairing"

    pairs: tuple[LabelMapPair, ...]
    images_without_map: tuple[str, ...] = ()
    maps_without_image: tuple[str, ...] = ()


def _by_key(folder: Path, extensions: tuple[str, ...], what: str) -> dict[str, Path]:
    """{relative path without extension: file} of the non-hidden files with `extensions` under `folder`."""
    if not folder.is_dir():
        raise InvalidInput(f"{folder}: no such folder of {what}")
    found: dict[str, Path] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder)
        if path.suffix.lower() not in extensions or any(part.startswith(".") for part in relative.parts):
            continue
        key = relative.with_suffix("").as_posix()
        if key in found:
            raise InvalidInput(f"{folder}: {found[key].name} and {path.name} share the stem {key!r}; keep one of them")
        found[key] = path
    return found


def _listed(keys: list[str]) -> str:
    return ", ".join(keys[:_LISTED]) + (f" and {len(keys) - _LISTED} more" if len(keys) > _LISTED else "")


def find_label_maps(images_folder: str | Path, maps_folder: str | Path, policy: PairingPolicy = "strict") -> Pairing:
    """Pair every image with the label map of the same stem (subfolders kept: `a/b.jpg` <-> `a/b.png`).

    `strict`: an image without a map or a map without an image is a one-line error.
    `intersect`: keep the matched pairs and report the others in the Pairing.
    """
    images = _by_key(Path(images_folder), IMAGE_EXTENSIONS, "images")
    maps = _by_key(Path(maps_folder), (LABEL_MAP_EXTENSION,), "label maps (PNG)")
    missing, extra = sorted(set(images) - set(maps)), sorted(set(maps) - set(images))
    if policy == "strict" and (missing or extra):
        parts = [f"no label map in {maps_folder} for {_listed(missing)}"] if missing else []
        parts += [f"no image in {images_folder} for the maps {_listed(extra)}"] if extra else []
        raise InvalidInput("; ".join(parts) + " (pair by stem: a/b.jpg <-> a/b.png, or use the intersect policy)")
    pairs = tuple(LabelMapPair(key, str(images[key]), str(maps[key])) for key in sorted(set(images) & set(maps)))
    if not pairs:
        raise InvalidInput(f"{images_folder} and {maps_folder}: no image has a label map of the same stem")
    return Pairing(pairs, tuple(missing), tuple(extra))


# ----------------------------------------------------------------------------- cropping

def resize_nearest(label_map: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """[H x W] ids -> [h x w] ids, nearest-neighbour at pixel centres (ids are never blended)."""
    height, width = size
    rows = ((np.arange(height) + 0.5) * label_map.shape[0] / height).astype(np.int64)
    cols = ((np.arange(width) + 0.5) * label_map.shape[1] / width).astype(np.int64)
    return np.ascontiguousarray(label_map[rows[:, None], cols[None, :]])


def crop_resize_label_map(label_map: np.ndarray, box: tuple[int, int, int], resolution: int) -> np.ndarray:
    """Cut the image's square `box` = (top, left, size) from the map, nearest-resize to resolution^2.

    [H x W] ids -> [resolution x resolution] ids; the twin of `ldm.data.images.crop_resize`.
    """
    top, left, size = box
    if top < 0 or left < 0 or top + size > label_map.shape[0] or left + size > label_map.shape[1]:
        raise ValueError(f"crop box {box} (top, left, size) leaves the {label_map.shape[0]}x{label_map.shape[1]} map")
    return resize_nearest(label_map[top : top + size, left : left + size], (resolution, resolution))


# ----------------------------------------------------------------------------- storage in shards

_STORED_SHIFT = 1  # seg.png holds id + 1: 0 is IGNORE_INDEX, 1..65535 are ids 0..65534
MAX_STORED_ID = np.iinfo(np.uint16).max - _STORED_SHIFT


def encode_label_map(label_map: np.ndarray) -> bytes:
    """[H x W] ids (IGNORE_INDEX or 0..MAX_STORED_ID) -> a 16-bit PNG of id + 1 (same ids give the same bytes)."""
    if label_map.ndim != 2 or label_map.size == 0:
        raise ValueError(f"a label map is a non-empty [H x W] array, got shape {label_map.shape}")
    if int(label_map.min()) < IGNORE_INDEX or int(label_map.max()) > MAX_STORED_ID:
        raise ValueError(f"label ids must lie in {IGNORE_INDEX}..{MAX_STORED_ID}, "
                         f"got {int(label_map.min())}..{int(label_map.max())}")
    buffer = io.BytesIO()
    stored = (label_map.astype(np.int64) + _STORED_SHIFT).astype(np.uint16)
    Image.fromarray(stored).save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def decode_stored_label_map(data: bytes) -> np.ndarray:
    """`encode_label_map`'s PNG bytes -> [H x W] int64 ids, IGNORE_INDEX where unlabelled."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image, dtype=np.int64) - _STORED_SHIFT


def check_matches_image(label_map: np.ndarray, image: np.ndarray, source: str) -> None:
    """Raise unless the [H x W] map and the [H x W x 3] image have the same height and width."""
    if label_map.shape[:2] != image.shape[:2]:
        raise InvalidInput(f"{source}: label map is {label_map.shape[0]}x{label_map.shape[1]} (HxW) but its image is "
                           f"{image.shape[0]}x{image.shape[1]}; a map must have its image's size")
