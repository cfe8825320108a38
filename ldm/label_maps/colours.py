"""Pictures of label maps and boxes a person can read: one fixed colour per class id, boxes outlined in it."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw
from skimage.color import hsv2rgb

from ldm.data.label_maps import IGNORE_INDEX
from ldm.data.layouts import Layout

TILE_MIN = 128  # px: the narrowest tile of a picture, so titles such as "label map (stand-in)" fit above it
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


def enlarge(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Tiles [N x H x W x 3] of every column repeated (nearest, ids stay crisp) to at least TILE_MIN px wide."""
    repeat = max(1, -(-TILE_MIN // next(iter(columns.values())).shape[2]))
    return {title: tiles.repeat(repeat, axis=1).repeat(repeat, axis=2) for title, tiles in columns.items()}
