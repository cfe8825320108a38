"""Readers of the box annotations of COCO and OpenImages into `Layout`s (Sec. 4.3.1, C.4).

COCO instances JSON (`instances_{split}.json`): `images` ({id, file_name,
height, width}), `annotations` ({image_id, category_id, bbox [x, y, w, h] in
pixels from the top-left corner, iscrowd}) and `categories` ({id, name}).
Class ids are the categories in ascending category-id order (COCO's 80 thing
ids run 1..90 with gaps; they become 0..79). A crowd annotation (iscrowd = 1)
is one box around a group of objects; it is kept as an ordinary box unless
`keep_groups=False`. Boxes are clipped to the image (COCO has boxes that
overhang by a fraction of a pixel). Layouts are keyed by `file_name`; an image
without annotations has an empty layout.

OpenImages boxes CSV (`*-annotations-bbox.csv`): one row per box with the
columns ImageID, LabelName (a MID such as /m/01g317), XMin, XMax, YMin, YMax
(already normalised) and IsGroupOf (kept unless `keep_groups=False`); the
other columns (Source, Confidence, IsOccluded, ...) are not read. With the
class-descriptions CSV (`MID,name` rows, with or without a `LabelName,DisplayName`
header) class ids follow that file's order and every MID must appear in it;
without it, class ids are the MIDs seen, sorted, named by their MID. Layouts
are keyed by ImageID, in the order of first appearance; the CSV holds no image
sizes, so `height`/`width` are None.

A malformed record is an `InvalidInput` naming the file, the record (COCO: its
index in `annotations`; CSV: its line, the header being line 1) and what is allowed.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from ldm.data.layouts import Box, ClassTable, Layout, LayoutSet
from ldm.errors import InvalidInput

OPENIMAGES_COLUMNS = ("ImageID", "LabelName", "XMin", "XMax", "YMin", "YMax")


def read_coco(path: str | Path, *, keep_groups: bool = True) -> LayoutSet:
    """COCO instances JSON -> the class table and {file_name: Layout}."""
    data = _read_json(path)
    categories = sorted(_coco_categories(path, data), key=lambda pair: pair[0])
    class_of = {category_id: index for index, (category_id, _) in enumerate(categories)}
    classes = ClassTable(names=tuple(name for _, name in categories), sources=tuple(str(i) for i, _ in categories))
    images = _coco_images(path, data)
    boxes: dict[int, list[Box]] = {image_id: [] for image_id in images}
    for index, record in enumerate(data["annotations"]):
        where = f"{path}: annotations[{index}]"
        if not isinstance(record, dict):
            raise InvalidInput(f"{where}: must be a JSON object")
        image_id, category_id = record.get("image_id"), record.get("category_id")
        if image_id not in images:
            raise InvalidInput(f"{where}: image_id {image_id!r} is not among the ids in 'images'")
        if category_id not in class_of:
            raise InvalidInput(f"{where}: category_id {category_id!r} is not among the ids in 'categories'")
        if record.get("iscrowd", 0) and not keep_groups:
            continue
        _, height, width = images[image_id]
        boxes[image_id].append(_coco_box(where, record.get("bbox"), class_of[category_id], height, width))
    layouts = {name: Layout(key=name, height=height, width=width, boxes=tuple(boxes[image_id]))
               for image_id, (name, height, width) in images.items()}
    return LayoutSet(classes=classes, layouts=layouts)


def _read_json(path: str | Path) -> dict[str, Any]:
    """The COCO file's top-level object, with its three lists."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations", "categories")):
        raise InvalidInput(f"{path}: a COCO instances file is an object with the lists 'images', 'annotations', 'categories'")
    return data


def _coco_categories(path: str | Path, data: dict[str, Any]) -> list[tuple[int, str]]:
    """(category id, name) of each category, checked."""
    pairs = []
    for index, record in enumerate(data["categories"]):
        if not isinstance(record, dict) or not _is_int(record.get("id")) or not isinstance(record.get("name"), str):
            raise InvalidInput(f"{path}: categories[{index}]: needs an integer 'id' and a string 'name'")
        pairs.append((record["id"], record["name"]))
    if len({i for i, _ in pairs}) != len(pairs):
        raise InvalidInput(f"{path}: categories: ids must be unique")
    return pairs


def _coco_images(path: str | Path, data: dict[str, Any]) -> dict[int, tuple[str, int, int]]:
    """{image id: (file_name, height, width)}, checked."""
    images = {}
    for index, record in enumerate(data["images"]):
        ok = isinstance(record, dict) and _is_int(record.get("id")) and isinstance(record.get("file_name"), str)
        if not ok or not all(_is_int(record.get(k)) and record[k] > 0 for k in ("height", "width")):
            raise InvalidInput(f"{path}: images[{index}]: needs an integer 'id', a string 'file_name' and "
                               f"positive integer 'height' and 'width'")
        images[record["id"]] = (record["file_name"], record["height"], record["width"])
    return images


def _coco_box(where: str, bbox: object, class_id: int, height: int, width: int) -> Box:
    """COCO [x, y, w, h] in pixels -> a Box with normalised corners, clipped to the image."""
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)) or min(bbox[2:]) < 0:
        raise InvalidInput(f"{where}: bbox must be [x, y, w, h], four finite numbers in pixels with w, h >= 0; "
                           f"got {bbox!r}")
    x, y, w, h = bbox
    x0, x1 = _clip(x / width), _clip((x + w) / width)
    y0, y1 = _clip(y / height), _clip((y + h) / height)
    return Box(class_id=class_id, x0=x0, y0=y0, x1=x1, y1=y1)


def read_openimages(boxes_csv: str | Path, descriptions_csv: str | Path | None = None, *,
                    keep_groups: bool = True) -> LayoutSet:
    """OpenImages boxes CSV (+ class descriptions CSV) -> the class table and {ImageID: Layout}."""
    rows = list(_csv_rows(boxes_csv))
    if descriptions_csv is not None:
        classes = _read_descriptions(descriptions_csv)
    else:
        mids = sorted({row["LabelName"] for _, row in rows})
        classes = ClassTable(names=tuple(mids), sources=tuple(mids))
    class_of = {mid: index for index, mid in enumerate(classes.sources)}
    boxes: dict[str, list[Box]] = {}
    for line, row in rows:
        where = f"{boxes_csv}: line {line}"
        if row["LabelName"] not in class_of:
            raise InvalidInput(f"{where}: LabelName {row['LabelName']!r} is not in {descriptions_csv}")
        if not keep_groups and row.get("IsGroupOf") == "1":
            continue
        boxes.setdefault(row["ImageID"], []).append(_openimages_box(where, row, class_of[row["LabelName"]]))
    layouts = {key: Layout(key=key, height=None, width=None, boxes=tuple(found)) for key, found in boxes.items()}
    return LayoutSet(classes=classes, layouts=layouts)


def _csv_rows(path: str | Path):
    """(line number, row dict) of a boxes CSV whose header holds the columns read."""
    try:
        with open(path, newline="") as file:
            reader = csv.DictReader(file)
            missing = sorted(set(OPENIMAGES_COLUMNS) - set(reader.fieldnames or ()))
            if missing:
                raise InvalidInput(f"{path}: line 1: the header lacks the columns {missing}; an OpenImages boxes "
                                   f"CSV has {list(OPENIMAGES_COLUMNS)} among its columns")
            for row in reader:
                if None in row or None in row.values():  # DictReader's marks of a short or a long row
                    fields = sum(v is not None for k, v in row.items() if k is not None) + len(row.get(None, ()))
                    raise InvalidInput(f"{path}: line {reader.line_num}: has {fields} fields "
                                       f"where the header names {len(reader.fieldnames)}")
                yield reader.line_num, row
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InvalidInput(f"{path}: not a readable CSV file ({exc})") from None


def _openimages_box(where: str, row: dict[str, str], class_id: int) -> Box:
    """A boxes-CSV row -> a Box; the corners must be numbers with 0 <= min <= max <= 1."""
    try:
        x0, x1, y0, y1 = (float(row[name]) for name in ("XMin", "XMax", "YMin", "YMax"))
        return Box(class_id=class_id, x0=x0, y0=y0, x1=x1, y1=y1)
    except ValueError:
        corners = {name: row[name] for name in ("XMin", "XMax", "YMin", "YMax")}
        raise InvalidInput(f"{where}: XMin, XMax, YMin, YMax must be numbers with 0 <= XMin <= XMax <= 1 and "
                           f"0 <= YMin <= YMax <= 1; got {corners}") from None


def _read_descriptions(path: str | Path) -> ClassTable:
    """Class-descriptions CSV (MID,name per line, optional header) -> ClassTable in file order."""
    try:
        with open(path, newline="") as file:
            lines = list(enumerate(csv.reader(file), start=1))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InvalidInput(f"{path}: not a readable CSV file ({exc})") from None
    if lines and lines[0][1][:1] == ["LabelName"]:
        lines = lines[1:]
    for line, row in lines:
        if len(row) != 2 or not row[0]:
            raise InvalidInput(f"{path}: line {line}: a class description is two fields, MID,name; got {row}")
    mids = [row[0] for _, row in lines]
    if len(set(mids)) != len(mids):
        raise InvalidInput(f"{path}: a MID is listed twice; each class once")
    return ClassTable(names=tuple(row[1] for _, row in lines), sources=tuple(mids))


def _clip(value: float) -> float:
    return min(max(value, 0.0), 1.0)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
