"""The embedded dataset: real photographs that ship inside scikit-image and scikit-learn.

Each photograph is one class with a caption. Its long side is split in two
disjoint regions, the first for train crops and the last `val_fraction` for val
crops, so no val pixel is ever seen in training. Crops are squares of a
log-uniform size between the resolution and `max_scale` times it, area-resized
to the resolution: the multi-scale crops a person would cut by hand.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ldm.data.images import crop_resize


@dataclass(frozen=True)
class Photo:
    """One embedded photograph: where it comes from and what it shows."""

    name: str
    source: str
    caption: str
    load: Callable[[], np.ndarray]


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data

        return getattr(data, name)()

    return load


def _sklearn(file_name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(file_name)

    return load


PHOTOS: tuple[Photo, ...] = (
    Photo("astronaut", "skimage.data.astronaut", "a portrait of an astronaut in a white spacesuit", _skimage("astronaut")),
    Photo("chelsea", "skimage.data.chelsea", "a ginger tabby cat looking to the side", _skimage("chelsea")),
    Photo("coffee", "skimage.data.coffee", "a cup of coffee on a saucer with a spoon", _skimage("coffee")),
    Photo("rocket", "skimage.data.rocket", "a rocket standing on its launch pad", _skimage("rocket")),
    Photo("motorcycle", "skimage.data.stereo_motorcycle", "a red motorcycle parked in a workshop", lambda: _motorcycle()),
    Photo("hubble", "skimage.data.hubble_deep_field", "distant galaxies of the hubble deep field", _skimage("hubble_deep_field")),
    Photo("tissue", "skimage.data.immunohistochemistry", "a microscope image of stained tissue", _skimage("immunohistochemistry")),
    Photo("retina", "skimage.data.retina", "a fundus photograph of a human retina", _skimage("retina")),
    Photo("china", "sklearn china.jpg", "a chinese temple roof among green trees", _sklearn("china.jpg")),
    Photo("flower", "sklearn flower.jpg", "a close-up of a pink flower", _sklearn("flower.jpg")),
    Photo("camera", "skimage.data.camera", "a black and white photo of a man with a camera", _skimage("camera")),
    Photo("coins", "skimage.data.coins", "a grey photo of old coins on a table", _skimage("coins")),
    Photo("moon", "skimage.data.moon", "a grey photo of the surface of the moon", _skimage("moon")),
    Photo("brick", "skimage.data.brick", "a grey photo of a brick wall", _skimage("brick")),
    Photo("grass", "skimage.data.grass", "a grey photo of a lawn of grass", _skimage("grass")),
    Photo("gravel", "skimage.data.gravel", "a grey photo of gravel", _skimage("gravel")),
)


def _motorcycle() -> np.ndarray:
    from skimage import data

    left, _right, _disparity = data.stereo_motorcycle()
    return left


def load_photo(photo: Photo) -> np.ndarray:
    """The photograph as [H x W x 3] uint8 (grey photographs repeated to three channels)."""
    image = np.asarray(photo.load())
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.dtype != np.uint8:
        raise TypeError(f"embedded photo {photo.name} has dtype {image.dtype}, expected uint8")
    return np.ascontiguousarray(image[..., :3])


def split_region(height: int, width: int, split: str, val_fraction: float) -> tuple[int, int, int, int]:
    """The (top, left, height, width) region of a photo that `split` may crop from."""
    long_axis_is_width = width >= height
    long_side = width if long_axis_is_width else height
    cut = long_side - max(1, int(round(long_side * val_fraction)))
    start, length = (0, cut) if split == "train" else (cut, long_side - cut)
    if long_axis_is_width:
        return 0, start, height, length
    return start, 0, length, width


def crop_boxes(region: tuple[int, int, int, int], count: int, resolution: int, max_scale: float, rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """`count` square boxes (top, left, size) inside `region`, sizes log-uniform in [r, max_scale * r]."""
    top, left, height, width = region
    largest = min(height, width, int(resolution * max_scale))
    if largest < resolution:
        raise ValueError(f"region {height}x{width} is smaller than the resolution {resolution}")
    sizes = np.exp(rng.uniform(math.log(resolution), math.log(largest), size=count))
    boxes = []
    for size in np.clip(np.rint(sizes).astype(int), resolution, largest):
        row = top + int(rng.integers(0, height - size + 1))
        col = left + int(rng.integers(0, width - size + 1))
        boxes.append((row, col, int(size)))
    return boxes


def per_class_counts(total: int, classes: int) -> list[int]:
    """Split `total` crops as evenly as possible over `classes`, the remainder to the first."""
    base, extra = divmod(total, classes)
    return [base + (index < extra) for index in range(classes)]


@dataclass(frozen=True)
class Crop:
    """One planned crop of an embedded photograph: its class id (index into PHOTOS) and square box (top, left, size)."""

    label: int
    box: tuple[int, int, int]


def crop_plan(images: Sequence[np.ndarray], split: str, total: int, resolution: int, seed: int, val_fraction: float,
              max_scale: float) -> list[Crop]:
    """The `total` crops of `split`, class by class; `images` are the loaded PHOTOS [H x W x 3], in order."""
    split_id = {"train": 0, "val": 1}[split]
    plan: list[Crop] = []
    for label, (image, count) in enumerate(zip(images, per_class_counts(total, len(images)))):
        height, width = image.shape[:2]
        region = split_region(height, width, split, val_fraction)
        # One generator per (seed, photo, split): adding a photo never moves another's crops.
        rng = np.random.default_rng([seed, label, split_id])
        plan += [Crop(label, box) for box in crop_boxes(region, count, resolution, max_scale, rng)]
    return plan


def cut_crop(images: Sequence[np.ndarray], crop: Crop, resolution: int) -> dict:
    """A planned crop as a dict: image [r x r x 3] uint8, label, class_name, caption, meta."""
    image, photo = images[crop.label], PHOTOS[crop.label]
    height, width = image.shape[:2]
    top, left, size = crop.box
    return {
        "image": crop_resize(image, crop.box, resolution),
        "label": crop.label,
        "class_name": photo.name,
        "caption": photo.caption,
        "meta": {"source": photo.source, "original_size": [height, width], "crop_box": [top, left, size, size]},
    }
