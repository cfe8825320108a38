"""The shapes of LaMa's large masks: irregular strokes in three widths, and boxes.

After the random mask generator of LaMa (Suvorov et al., "Resolution-robust
Large Mask Inpainting with Fourier Convolutions", 2021; the LDM paper's [85],
used for its inpainting masks, D.2.2): `make_random_irregular_mask` and
`make_random_rectangle_mask` of `saicinpainting/training/data/masks.py`, with the
settings of `configs/data_gen/random_{thick,medium,thin}_256.yaml`.

Legend: H, W the image's height and width; `scale` = min(H, W) / 256, since
LaMa's sizes are in pixels of a 256 px image; a mask is [H x W] uint8, 1 = hole.

A stroke is a random walk of 1..5 thick line segments from a uniform start:
each segment has a random direction, length and width. LaMa draws the angle as
an integer number of radians (plus 0.01) and lengths and widths as integers;
here they are continuous, so the walks do not favour four directions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

REFERENCE_SIDE = 256  # the side LaMa's pixel sizes are given for


@dataclass(frozen=True)
class Strokes:
    """One stroke kind at 256 px: how many strokes, the largest extra width and length a segment adds."""

    min_strokes: int
    max_strokes: int
    max_width: float  # px: a segment is 5 + U(0, max_width) px wide
    max_length: float  # px: and 10 + U(0, max_length) px long
    max_angle: float = 4.0  # radians: a segment turns U(0, max_angle), mirrored on every other stroke
    max_segments: int = 5  # a stroke is 1..max_segments segments
    min_width: float = 5.0
    min_length: float = 10.0


@dataclass(frozen=True)
class Boxes:
    """Axis-aligned boxes at 256 px: how many, their side range, the margin kept free at the border."""

    min_boxes: int = 1
    max_boxes: int = 3
    min_size: float = 30.0
    max_size: float = 150.0
    margin: float = 10.0


# LaMa's configs/data_gen/random_{thick,medium,thin}_256.yaml (irregular_kwargs) and the thick config's box_kwargs.
STROKES = {
    "thick": Strokes(min_strokes=1, max_strokes=5, max_width=100.0, max_length=200.0),
    "medium": Strokes(min_strokes=4, max_strokes=5, max_width=50.0, max_length=100.0),
    "thin": Strokes(min_strokes=4, max_strokes=50, max_width=10.0, max_length=40.0),
}
BOXES = Boxes()


def _scale(height: int, width: int) -> float:
    return min(height, width) / REFERENCE_SIDE


def draw_strokes(height: int, width: int, strokes: Strokes, rng: np.random.Generator) -> np.ndarray:
    """Random walks of thick line segments -> [H x W] uint8 mask, 1 = hole."""
    mask = np.zeros((height, width), np.uint8)
    scale = _scale(height, width)
    for stroke in range(int(rng.integers(strokes.min_strokes, strokes.max_strokes + 1))):
        x, y = float(rng.integers(width)), float(rng.integers(height))
        for _ in range(1 + int(rng.integers(strokes.max_segments))):
            angle = float(rng.uniform(0.0, strokes.max_angle))
            angle = 2.0 * math.pi - angle if stroke % 2 == 0 else angle  # LaMa mirrors every other stroke
            length = (strokes.min_length + rng.uniform(0.0, strokes.max_length)) * scale
            thickness = max(1, round((strokes.min_width + rng.uniform(0.0, strokes.max_width)) * scale))
            end_x = min(max(x + length * math.sin(angle), 0.0), width - 1.0)
            end_y = min(max(y + length * math.cos(angle), 0.0), height - 1.0)
            cv2.line(mask, (round(x), round(y)), (round(end_x), round(end_y)), 1, thickness)
            x, y = end_x, end_y
    return mask


def draw_boxes(height: int, width: int, boxes: Boxes, rng: np.random.Generator) -> np.ndarray:
    """Random axis-aligned boxes inside a margin -> [H x W] uint8 mask, 1 = hole."""
    mask = np.zeros((height, width), np.uint8)
    scale = _scale(height, width)
    margin = round(boxes.margin * scale)
    largest = max(1, min(round(boxes.max_size * scale), height - 2 * margin, width - 2 * margin))
    smallest = max(1, min(round(boxes.min_size * scale), largest))
    for _ in range(int(rng.integers(boxes.min_boxes, boxes.max_boxes + 1))):
        box_h, box_w = (int(rng.integers(smallest, largest + 1)) for _ in range(2))
        top = int(rng.integers(margin, max(margin, height - margin - box_h) + 1))
        left = int(rng.integers(margin, max(margin, width - margin - box_w) + 1))
        mask[top : top + box_h, left : left + box_w] = 1
    return mask
