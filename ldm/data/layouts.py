"""Layouts for layout-to-image synthesis (Sec. 4.3.1, C.4): labelled boxes on an image, and their JSON form.

Coordinates are normalised to the image: x runs left to right over the width,
y top to bottom over the height, both in [0, 1]; a box is its top-left corner
(x0, y0) and bottom-right corner (x1, y1), with x0 <= x1 and y0 <= y1. A class
id indexes the dataset's `ClassTable` (contiguous, from 0).

The layout file (`boxes.json`, as handed to `ldm sample --layout`) holds one
layout or a list of them; `height`/`width` are the image size in pixels and may
be null when unknown, `key` names the sample:

```text
{
  "key": "street",
  "height": 256,
  "width": 384,
  "boxes": [
    {"class_id": 0, "x0": 0.10, "y0": 0.25, "x1": 0.45, "y1": 0.95},
    {"class_id": 17, "x0": 0.50, "y0": 0.60, "x1": 0.80, "y1": 0.90}
  ]
}
```

The class table that gives the ids their names is written beside it in the form
`ClassTable.to_dict`: `{"names": [...], "sources": [...]}` (a source is the
dataset's own id: a COCO category id, an OpenImages label MID).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ldm.errors import InvalidInput

BOX_KEYS = ("class_id", "x0", "y0", "x1", "y1")
LAYOUT_KEYS = ("key", "height", "width", "boxes")


@dataclass(frozen=True)
class Box:
    """One labelled box: class id and normalised corners, 0 <= x0 <= x1 <= 1, 0 <= y0 <= y1 <= 1."""

    class_id: int
    x0: float
    y0: float
    x1: float
    y1: float

    def __post_init__(self) -> None:
        if isinstance(self.class_id, bool) or not isinstance(self.class_id, int) or self.class_id < 0:
            raise ValueError(f"class_id must be an integer >= 0, got {self.class_id!r}")
        corners = (self.x0, self.y0, self.x1, self.y1)
        if not all(isinstance(c, (int, float)) and not isinstance(c, bool) and math.isfinite(c) for c in corners):
            raise ValueError(f"corners must be finite numbers, got {corners}")
        if not (0.0 <= self.x0 <= self.x1 <= 1.0 and 0.0 <= self.y0 <= self.y1 <= 1.0):
            raise ValueError(f"corners must satisfy 0 <= x0 <= x1 <= 1 and 0 <= y0 <= y1 <= 1, got {corners}")

    @property
    def area(self) -> float:
        """Fraction of the image the box covers."""
        return (self.x1 - self.x0) * (self.y1 - self.y0)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: {"class_id", "x0", "y0", "x1", "y1"}."""
        return {"class_id": self.class_id, "x0": self.x0, "y0": self.y0, "x1": self.x1, "y1": self.y1}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Box:
        """Inverse of `to_dict`; a missing or unknown key is a ValueError naming it."""
        _check_keys(data, BOX_KEYS, "box")
        return cls(**{key: data[key] for key in BOX_KEYS})


@dataclass(frozen=True)
class Layout:
    """The boxes of one image, in normalised coordinates; `height`/`width` in pixels, None when unknown."""

    key: str
    height: int | None
    width: int | None
    boxes: tuple[Box, ...]

    def __post_init__(self) -> None:
        for name in ("height", "width"):
            size = getattr(self, name)
            if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
                raise ValueError(f"{name} must be a positive integer or null, got {size!r}")

    def to_dict(self) -> dict[str, Any]:
        """The JSON form documented at the top of this module."""
        return {"key": self.key, "height": self.height, "width": self.width,
                "boxes": [box.to_dict() for box in self.boxes]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Layout:
        """Inverse of `to_dict`; a missing or unknown key, or a bad value, is an error naming it."""
        _check_keys(data, LAYOUT_KEYS, "layout")
        if not isinstance(data["boxes"], list):
            raise TypeError(f"'boxes' must be a list, got {type(data['boxes']).__name__}")
        boxes = []
        for index, box in enumerate(data["boxes"]):
            try:
                boxes.append(Box.from_dict(box))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"box {index}: {exc}") from None
        return cls(key=str(data["key"]), height=data["height"], width=data["width"], boxes=tuple(boxes))


@dataclass(frozen=True)
class ClassTable:
    """The classes of a dataset: `names[i]` is class id i, `sources[i]` the dataset's own id for it."""

    names: tuple[str, ...]
    sources: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.names) != len(self.sources):
            raise ValueError(f"{len(self.names)} names for {len(self.sources)} sources")

    def __len__(self) -> int:
        return len(self.names)

    def to_dict(self) -> dict[str, Any]:
        """{"names": [...], "sources": [...]}."""
        return {"names": list(self.names), "sources": list(self.sources)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClassTable:
        """Inverse of `to_dict`."""
        _check_keys(data, ("names", "sources"), "class table")
        return cls(names=tuple(map(str, data["names"])), sources=tuple(map(str, data["sources"])))


@dataclass(frozen=True)
class LayoutSet:
    """What a dataset reader gives: the class table and each image's layout, by image name."""

    classes: ClassTable
    layouts: dict[str, Layout]


def _check_keys(data: object, allowed: tuple[str, ...], what: str) -> None:
    """A TypeError unless `data` is a dict, a ValueError unless it has exactly the keys `allowed`."""
    if not isinstance(data, dict):
        raise TypeError(f"a {what} must be a JSON object, got {type(data).__name__}")
    missing, unknown = sorted(set(allowed) - set(data)), sorted(set(data) - set(allowed))
    if missing or unknown:
        raise ValueError(f"a {what} has the keys {list(allowed)}; missing {missing}, unknown {unknown}")


def load_layouts(path: str | Path) -> list[Layout]:
    """A layout file (one layout or a list, see the module docstring) -> its layouts, in file order."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"{path}: not a readable JSON file ({exc})") from None
    records = data if isinstance(data, list) else [data]
    layouts = []
    for index, record in enumerate(records):
        try:
            layouts.append(Layout.from_dict(record))
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"{path}: layout {index}: {exc}") from None
    return layouts


def save_layouts(path: str | Path, layouts: list[Layout]) -> None:
    """Write `layouts` as a layout file (a JSON list) that `load_layouts` reads back."""
    Path(path).write_text(json.dumps([layout.to_dict() for layout in layouts], indent=1) + "\n")
