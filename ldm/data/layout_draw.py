"""A layout drawn for a person: each box outlined on a blank canvas in its class's colour, labelled with its class.

Colours come from the class id alone (hues a golden-ratio step apart), so a class
keeps its colour across pictures; larger boxes are drawn first so smaller ones stay
visible on top of them.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from ldm.data.layouts import Layout

_GOLDEN = 0.618033988749895  # hue step between consecutive class ids


def class_colour(class_id: int) -> tuple[int, int, int]:
    """A saturated RGB colour for a class id, the same every time."""
    r, g, b = colorsys.hsv_to_rgb((class_id * _GOLDEN) % 1.0, 0.85, 0.8)
    return round(r * 255), round(g * 255), round(b * 255)


def draw_layout(layout: Layout, height: int, width: int, names: Sequence[str] = ()) -> np.ndarray:
    """Layout -> [H x W x 3] uint8: a white canvas with each box outlined and labelled (`names[class_id]` or the id)."""
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    line = max(1, min(height, width) // 64)
    for box in sorted(layout.boxes, key=lambda b: -b.area):
        colour = class_colour(box.class_id)
        corners = (box.x0 * (width - 1), box.y0 * (height - 1), box.x1 * (width - 1), box.y1 * (height - 1))
        draw.rectangle(corners, outline=colour, width=line)
        label = names[box.class_id] if box.class_id < len(names) else str(box.class_id)
        draw.text((corners[0] + line + 1, corners[1] + line), label, fill=colour)
    return np.asarray(canvas).copy()
