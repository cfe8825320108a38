"""What the label_maps report shows: class and box counts, and pictures of maps and boxes a person can read."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from itertools import islice

import numpy as np
from PIL import Image, ImageDraw
from skimage.color import hsv2rgb

from ldm.data.label_maps import IGNORE_INDEX
from ldm.data.layouts import Layout
from ldm.data.schema import ImageSample, LabelMapSample
from ldm.label_maps.shards import LabelMapRecord
from ldm.reports import quantiles

TILE_MIN = 128  # px: the narrowest tile in the grid
_GOLDEN = 0.618033988749895  # hue step between consecutive ids: neighbours get far-apart colours


def class_colours(ids: np.ndarray) -> np.ndarray:
    """[...] int ids -> [... x 3] uint8 colours, the same for an id in every picture; unlabelled black."""
    hue = (np.maximum(ids, 0) * _GOLDEN) % 1.0
    saturation = 0.45 + 0.4 * ((ids * 7) % 3) / 2  # three saturations, so ids a hue cycle apart still differ
    hsv = np.stack([hue, saturation, np.full(ids.shape, 0.92)], axis=-1)
    rgb = (hsv2rgb(hsv.reshape(-1, 1, 3)).reshape(hsv.shape) * 255).round().astype(np.uint8)
    return np.where((ids == IGNORE_INDEX)[..., None], np.uint8(0), rgb)


def colourise(label_map: np.ndarray) -> np.ndarray:
    """[H x W] ids -> [H x W x 3] uint8, one colour per class id."""
    return class_colours(label_map)


def draw_boxes(image: np.ndarray, layout: Layout) -> np.ndarray:
    """[H x W x 3] uint8 with each box of `layout` outlined in its class colour."""
    height, width = image.shape[:2]
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    for box in layout.boxes:
        colour = tuple(int(c) for c in class_colours(np.asarray(box.class_id)))
        corners = (box.x0 * width, box.y0 * height, max(box.x0 * width, box.x1 * width - 1),
                   max(box.y0 * height, box.y1 * height - 1))
        draw.rectangle(corners, outline=colour, width=1)
    return np.asarray(canvas)


def summarize(records: Sequence[LabelMapRecord]) -> dict:
    """The report's view of many maps: classes seen (images holding each), unlabelled share, boxes per image."""
    holding = Counter(class_id for record in records for class_id in record.classes)
    boxes = [record.boxes for record in records]
    return {
        "classes_seen": len(holding),
        "images_per_class": {str(class_id): holding[class_id] for class_id in sorted(holding)},
        "classes_per_image": quantiles([len(record.classes) for record in records]),
        "unlabelled_fraction": quantiles([record.unlabelled for record in records]),
        "boxes_per_image": {**quantiles(boxes), "mean": round(float(np.mean(boxes)), 4) if boxes else 0.0,
                            "total": int(sum(boxes))},
    }


def grid_columns(pairs: Iterator[tuple[ImageSample, LabelMapSample]], count: int, total: int,
                 stand_in_maps: bool, stand_in_boxes: bool) -> tuple[dict[str, np.ndarray], list[str]]:
    """`count` (image, map) pairs spread over `total` -> columns image | label map (colourised) | boxes drawn
    ([N x H x W x 3] uint8 each, titles naming stand-ins) and a label per row (classes and boxes)."""
    chosen = list(islice(islice(pairs, 0, None, max(1, total // count)), count))
    columns = {
        "image": np.stack([image.image for image, _ in chosen]),
        "label map" + (" (stand-in)" if stand_in_maps else ""): np.stack([colourise(found.label_map) for _, found in chosen]),
        "boxes" + (" (stand-in)" if stand_in_boxes else ""): np.stack([draw_boxes(image.image, found.layout) for image, found in chosen]),
    }
    # Tiles at least TILE_MIN px wide (nearest, so ids stay crisp): titles such as "label map (stand-in)" fit.
    repeat = max(1, -(-TILE_MIN // columns["image"].shape[2]))
    columns = {title: tiles.repeat(repeat, axis=1).repeat(repeat, axis=2) for title, tiles in columns.items()}
    labels = [f"{len(set(found.label_map.ravel().tolist()) - {IGNORE_INDEX})} cl {len(found.layout.boxes)} bx"
              for _, found in chosen]
    return columns, labels
