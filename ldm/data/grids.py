"""Pictures a person reads: image grids as PNG, written atomically (a temp file moved into place)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torchvision.utils import make_grid, save_image

GUTTER = 2  # px of white between tiles
TITLE_HEIGHT = 16  # px above the columns for their titles (Pillow's default font is about 11 px high)
LABEL_CHAR_WIDTH = 7  # px per character of a row label in the default font


def _write_atomically(path: str | Path, save: Callable[[Path], None]) -> None:
    """`save(temp)` a PNG beside `path`, then move it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.partial.png")
    save(temp)
    temp.replace(path)


def save_grid(images: torch.Tensor, path: str | Path, nrow: int) -> None:
    """uint8 [N x 3 x H x W] as one PNG grid, `nrow` images per row, white gutters."""
    grid = make_grid(images.float() / 255.0, nrow=nrow, padding=GUTTER, pad_value=1.0)
    _write_atomically(path, lambda temp: save_image(grid, temp))


def save_titled_columns(columns: Mapping[str, np.ndarray], path: str | Path, row_labels: Sequence[str] = ()) -> None:
    """Columns of uint8 [N x H x W x 3] images side by side, each under its title, one row per index, and an
    optional label left of each row. Every column holds the same N and tile size."""
    tiles = list(columns.values())
    count, height, width = tiles[0].shape[:3]
    if any(column.shape[:3] != (count, height, width) for column in tiles):
        raise ValueError(f"columns differ in shape: {[column.shape for column in tiles]}")
    label_width = max(map(len, row_labels)) * LABEL_CHAR_WIDTH + GUTTER if row_labels else 0
    picture = Image.new("RGB", (label_width + len(tiles) * (width + GUTTER) + GUTTER,
                                TITLE_HEIGHT + count * (height + GUTTER) + GUTTER), "white")
    draw = ImageDraw.Draw(picture)
    for c, (title, column) in enumerate(columns.items()):
        left = label_width + GUTTER + c * (width + GUTTER)
        draw.text((left + 2, 2), title, fill="black")
        for r in range(count):
            picture.paste(Image.fromarray(column[r]), (left, TITLE_HEIGHT + GUTTER + r * (height + GUTTER)))
    for r, label in enumerate(row_labels):
        draw.text((GUTTER, TITLE_HEIGHT + GUTTER + r * (height + GUTTER) + height // 2 - 6), label, fill="black")
    _write_atomically(path, picture.save)
