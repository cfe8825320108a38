"""A stand-in for box annotations: the boxes around the connected regions of a label map.

Where no dataset supplies boxes (the embedded default), layouts are derived
from label maps instead; this is a stand-in for annotated boxes, not a detector.
"""

from __future__ import annotations

import numpy as np
from skimage import measure

from ldm.data.layouts import Box


def boxes_from_label_map(label_map: np.ndarray, min_area: int = 1, background: int | None = 0) -> tuple[Box, ...]:
    """Stand-in boxes: one per 8-connected region of equal label in an [H x W] int map.

    A region's class id is its label; regions of the `background` label (None:
    none) and regions of fewer than `min_area` pixels give no box. Boxes come in
    the order skimage numbers the regions (raster order of their first pixel);
    corners are pixel edges over the map's size, so a region covering columns
    c0..c1 - 1 gives x0 = c0 / W, x1 = c1 / W.
    """
    if label_map.ndim != 2 or not np.issubdtype(label_map.dtype, np.integer):
        raise ValueError(f"label_map must be an [H x W] integer array, got {label_map.dtype} {label_map.shape}")
    if label_map.size and label_map.min() < 0:
        raise ValueError("label_map: labels are class ids, >= 0")
    height, width = label_map.shape
    # skimage numbers equal-valued connected regions; its background is never labelled.
    regions = measure.label(label_map, background=-1 if background is None else background, connectivity=2)
    boxes = []
    for region in measure.regionprops(regions):
        if region.area < min_area:
            continue
        row0, col0, row1, col1 = region.bbox  # max row/col exclusive
        class_id = int(label_map[tuple(region.coords[0])])
        boxes.append(Box(class_id=class_id, x0=col0 / width, y0=row0 / height, x1=col1 / width, y1=row1 / height))
    return tuple(boxes)
