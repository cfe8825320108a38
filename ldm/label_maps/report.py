"""What the label_maps report shows: class and box counts, and pictures of maps and boxes a person can read."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from itertools import islice

import numpy as np

from ldm.data.label_maps import IGNORE_INDEX
from ldm.data.schema import ImageSample, LabelMapSample
from ldm.label_maps.colours import colourise, draw_boxes, enlarge
from ldm.label_maps.shards import LabelMapRecord
from ldm.reports import quantiles

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
    columns = enlarge(columns)
    labels = [f"{len(set(found.label_map.ravel().tolist()) - {IGNORE_INDEX})} cl {len(found.layout.boxes)} bx"
              for _, found in chosen]
    return columns, labels
