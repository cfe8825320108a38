"""The layout (boxes) of a crop: a dataset's boxes clipped to the crop window, or stand-in boxes from its label map.

A dataset box is normalised to its original image [H0 x W0]; the crop is the
square window (top, left, size) of that image, resized to the crop's
resolution. A box becomes pixels of the original, is intersected with the
window and normalised to it; what is left smaller than `min_area` pixels at the
crop's resolution (or nothing at all) is dropped.
"""

from __future__ import annotations

import functools
from pathlib import PurePosixPath

import numpy as np

from ldm.data.label_maps import IGNORE_INDEX
from ldm.data.layout_readers import read_coco, read_openimages
from ldm.data.layout_standin import boxes_from_label_map
from ldm.data.layouts import Box, Layout, LayoutSet
from ldm.errors import InvalidInput
from ldm.label_maps.config import LabelMapConfig

CropBox = tuple[int, int, int]  # (top, left, size) in pixels of the original image


def crop_boxes(boxes: tuple[Box, ...], original: tuple[int, int], window: CropBox, resolution: int,
               min_area: int) -> tuple[Box, ...]:
    """Boxes normalised to the original (H0, W0) -> boxes normalised to the square `window`, clipped to it."""
    height, width = original
    top, left, size = window
    kept = []
    for box in boxes:
        x0, x1 = (np.clip([box.x0 * width - left, box.x1 * width - left], 0, size) / size).tolist()
        y0, y1 = (np.clip([box.y0 * height - top, box.y1 * height - top], 0, size) / size).tolist()
        if (x1 - x0) * (y1 - y0) * resolution**2 >= min_area:
            kept.append(Box(class_id=box.class_id, x0=x0, y0=y0, x1=x1, y1=y1))
    return tuple(kept)


def stand_in_layout(label_map: np.ndarray, key: str, min_area: int) -> Layout:
    """A STAND-IN layout: one box per 8-connected region of equal id of an [H x W] map; unlabelled gives none."""
    shifted = np.where(label_map == IGNORE_INDEX, 0, label_map + 1)  # boxes_from_label_map takes ids >= 0
    boxes = boxes_from_label_map(shifted, min_area=min_area, background=0)
    height, width = label_map.shape
    return Layout(key=key, height=height, width=width,
                  boxes=tuple(Box(b.class_id - 1, b.x0, b.y0, b.x1, b.y1) for b in boxes))


@functools.lru_cache(maxsize=2)
def _annotations(config: LabelMapConfig) -> LayoutSet:
    """The dataset's boxes, read once per process."""
    if config.boxes == "coco":
        return read_coco(config.boxes_path, keep_groups=config.keep_groups)
    return read_openimages(config.boxes_path, config.descriptions or None, keep_groups=config.keep_groups)


def box_classes(config: LabelMapConfig) -> dict:
    """The class table of the boxes: the dataset's, or the label map's ids for stand-in boxes."""
    if config.boxes == "label_map":
        return {"source": "label map ids", "n_classes": config.map_classes}
    classes = _annotations(config).classes
    return {"source": config.boxes, "n_classes": len(classes), **classes.to_dict()}


def dataset_layout(config: LabelMapConfig, relpath: str, key: str, original: tuple[int, int], window: CropBox,
                   resolution: int) -> Layout:
    """The dataset boxes of the image at `relpath` (below the download folder), clipped to its crop.

    COCO layouts are found by file name (the path, else its last part); an image the JSON does not list is an
    error. OpenImages layouts by ImageID (the file's stem); an image without rows has no boxes.
    """
    layouts = _annotations(config).layouts
    path = PurePosixPath(relpath)
    names = (relpath, path.name) if config.boxes == "coco" else (path.stem,)
    found = next((layouts[name] for name in names if name in layouts), None)
    if found is None and config.boxes == "coco":
        raise InvalidInput(f"{config.boxes_path}: no image with file_name {relpath!r} or {path.name!r}; "
                           "list every image of the folder in the instances JSON")
    boxes = crop_boxes(found.boxes if found else (), original, window, resolution, config.min_area)
    return Layout(key=key, height=resolution, width=resolution, boxes=boxes)
