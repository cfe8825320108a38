"""Pictures a person reads: image grids as PNG, written atomically (a temp file moved into place)."""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.utils import make_grid, save_image


def save_grid(images: torch.Tensor, path: str | Path, nrow: int) -> None:
    """uint8 [N x 3 x H x W] as one PNG grid, `nrow` images per row, white gutters."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.partial.png")
    save_image(make_grid(images.float() / 255.0, nrow=nrow, padding=2, pad_value=1.0), temp)
    temp.replace(path)
