"""Layouts: COCO and OpenImages readers, the layout file, the (l, b, c) box tokenizer, label-map stand-in boxes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ldm.conditioning import LayoutTokenizer, LayoutTokenizerConfig, largest_grid
from ldm.data.layout_readers import read_coco, read_openimages
from ldm.data.layout_standin import boxes_from_label_map
from ldm.data.layouts import Box, ClassTable, Layout, load_layouts, save_layouts
from ldm.errors import InvalidInput

# Non-square image (H 200, W 400) so a swapped height and width fails.
COCO = {
    "images": [{"id": 7, "file_name": "a.jpg", "height": 200, "width": 400},
               {"id": 9, "file_name": "b.jpg", "height": 100, "width": 100}],
    "categories": [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"}, {"id": 90, "name": "toothbrush"}],
    "annotations": [
        {"id": 1, "image_id": 7, "category_id": 18, "bbox": [40, 20, 100, 50], "iscrowd": 0},
        {"id": 2, "image_id": 7, "category_id": 1, "bbox": [380, 190, 30, 20], "iscrowd": 0},  # overhangs: clipped
        {"id": 3, "image_id": 7, "category_id": 90, "bbox": [0, 0, 400, 200], "iscrowd": 1},
    ],
}
OI_HEADER = "ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,IsGroupOf,IsDepiction,IsInside"
OI_ROWS = ["img1,xclick,/m/0bt9lr,1,0.1,0.5,0.2,0.9,0,0,0,0,0",
           "img2,xclick,/m/01g317,1,0.0,1.0,0.25,0.75,1,0,1,0,0",
           "img1,activemil,/m/01g317,1,0.6,0.7,0.3,0.4,0,0,0,0,0"]
OI_CLASSES = "/m/01g317,Person\n/m/0bt9lr,Dog\n/m/04yx4,Man\n"


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def _corners(box):
    return (box.x0, box.y0, box.x1, box.y1)


def test_coco_boxes_are_normalised_corners_with_contiguous_classes(tmp_path):
    found = read_coco(_write(tmp_path, "instances.json", json.dumps(COCO)))
    assert found.classes == ClassTable(names=("person", "dog", "toothbrush"), sources=("1", "18", "90"))
    dog, person, crowd = found.layouts["a.jpg"].boxes
    assert (dog.class_id, _corners(dog)) == (1, pytest.approx((0.1, 0.1, 0.35, 0.35)))
    assert (person.class_id, _corners(person)) == (0, pytest.approx((0.95, 0.95, 1.0, 1.0)))
    assert (crowd.class_id, _corners(crowd)) == (2, (0.0, 0.0, 1.0, 1.0))
    assert (found.layouts["a.jpg"].height, found.layouts["a.jpg"].width) == (200, 400)
    assert found.layouts["b.jpg"].boxes == ()
    dropped = read_coco(tmp_path / "instances.json", keep_groups=False)
    assert [box.class_id for box in dropped.layouts["a.jpg"].boxes] == [1, 0]


@pytest.mark.parametrize("change, message", [
    ({"bbox": [1, 2, -3, 4]}, "annotations[1]: bbox must be [x, y, w, h]"),
    ({"bbox": [1, 2, 3]}, "annotations[1]: bbox must be [x, y, w, h]"),
    ({"category_id": 5}, "annotations[1]: category_id 5 is not among the ids in 'categories'"),
    ({"image_id": 8}, "annotations[1]: image_id 8 is not among the ids in 'images'"),
])
def test_coco_malformed_annotation_names_file_and_record(tmp_path, change, message):
    bad = json.loads(json.dumps(COCO))
    bad["annotations"][1].update(change)
    path = _write(tmp_path, "bad.json", json.dumps(bad))
    with pytest.raises(InvalidInput) as error:
        read_coco(path)
    assert str(error.value).startswith(f"{path}: {message}") and "\n" not in str(error.value)


def test_openimages_rows_with_and_without_class_descriptions(tmp_path):
    boxes = _write(tmp_path, "boxes.csv", "\n".join([OI_HEADER, *OI_ROWS]) + "\n")
    found = read_openimages(boxes, _write(tmp_path, "classes.csv", OI_CLASSES))
    assert found.classes.names == ("Person", "Dog", "Man")
    assert list(found.layouts) == ["img1", "img2"]
    dog, person = found.layouts["img1"].boxes
    assert (dog.class_id, _corners(dog)) == (1, (0.1, 0.2, 0.5, 0.9))
    assert (person.class_id, _corners(person)) == (0, (0.6, 0.3, 0.7, 0.4))
    bare = read_openimages(boxes, keep_groups=False)
    assert bare.classes == ClassTable(names=("/m/01g317", "/m/0bt9lr"), sources=("/m/01g317", "/m/0bt9lr"))
    assert list(bare.layouts) == ["img1"] and bare.layouts["img1"].boxes[0].class_id == 1


@pytest.mark.parametrize("row, message", [
    ("img3,xclick,/m/01g317,1,0.5,0.4,0.2,0.9,0,0,0,0,0", "line 3: XMin, XMax, YMin, YMax must be numbers"),
    ("img3,xclick,/m/01g317,1,0.1,abc,0.2,0.9,0,0,0,0,0", "line 3: XMin, XMax, YMin, YMax must be numbers"),
    ("img3,xclick,/m/01g317,1,0.1", "line 3: has 5 fields where the header names 13"),
    ("img3,xclick,/m/09xyz,1,0.1,0.5,0.2,0.9,0,0,0,0,0", "line 3: LabelName '/m/09xyz' is not in"),
])
def test_openimages_malformed_row_names_file_and_line(tmp_path, row, message):
    boxes = _write(tmp_path, "boxes.csv", "\n".join([OI_HEADER, OI_ROWS[0], row]) + "\n")
    with pytest.raises(InvalidInput) as error:
        read_openimages(boxes, _write(tmp_path, "classes.csv", OI_CLASSES))
    assert str(error.value).startswith(f"{boxes}: {message}") and "\n" not in str(error.value)


def test_openimages_header_without_box_columns(tmp_path):
    boxes = _write(tmp_path, "boxes.csv", "ImageID,LabelName,XMin\nimg1,/m/01g317,0.1\n")
    with pytest.raises(InvalidInput, match=r"boxes.csv: line 1: the header lacks the columns \['XMax', 'YMax', 'YMin'\]"):
        read_openimages(boxes)


def test_layout_file_round_trip_and_bad_box(tmp_path):
    layouts = [Layout(key="a", height=16, width=24, boxes=(Box(3, 0.1, 0.2, 0.3, 0.4),)),
               Layout(key="b", height=None, width=None, boxes=())]
    save_layouts(tmp_path / "boxes.json", layouts)
    assert load_layouts(tmp_path / "boxes.json") == layouts
    one = {"key": "c", "height": 8, "width": 8, "boxes": [{"class_id": 0, "x0": 0.5, "y0": 0, "x1": 0.4, "y1": 1}]}
    path = _write(tmp_path, "one.json", json.dumps(one))
    with pytest.raises(InvalidInput, match=r"one.json: layout 0: box 0: corners must satisfy 0 <= x0 <= x1 <= 1"):
        load_layouts(path)


def _random_layout(generator, count, num_classes):
    corners = torch.rand(count, 4, generator=generator, dtype=torch.float64)
    x0, x1 = corners[:, 0].minimum(corners[:, 1]), corners[:, 0].maximum(corners[:, 1])
    y0, y1 = corners[:, 2].minimum(corners[:, 3]), corners[:, 2].maximum(corners[:, 3])
    classes = torch.randint(num_classes, (count,), generator=generator)
    boxes = (Box(int(c), float(a), float(b), float(d), float(e)) for c, a, b, d, e in zip(classes, x0, y0, x1, y1))
    return Layout(key="r", height=16, width=24, boxes=tuple(boxes))


def test_tokenizer_round_trip_within_half_a_grid_step():
    tokenizer = LayoutTokenizer(LayoutTokenizerConfig(num_classes=10, grid=32, max_boxes=30))
    layout = _random_layout(torch.Generator().manual_seed(0), 12, 10)
    tokens = tokenizer.encode(layout)
    decoded = tokenizer.decode(tokens)
    assert tokens.dtype == torch.long and tokens.shape == (92,)
    half_step = 0.5 / 31
    for box in layout.boxes:  # every box comes back, in some order, within half a step of its corners
        matches = [d for d in decoded.boxes if d.class_id == box.class_id
                   and max(abs(p - q) for p, q in zip(_corners(d), _corners(box))) <= half_step + 1e-12]
        assert matches, box
    assert len(decoded.boxes) == 12
    assert torch.equal(tokenizer.encode(decoded), tokens)  # the order is a function of the snapped boxes
    assert tokenizer.decode_window(tokens) == (0.0, 0.0, 1.0, 1.0)


def test_tokenizer_pads_truncates_to_largest_and_stays_in_vocabulary():
    tokenizer = LayoutTokenizer(LayoutTokenizerConfig(num_classes=5, grid=16, max_boxes=4))
    assert (tokenizer.vocab_size, tokenizer.seq_len, tokenizer.pad) == (16 * 16 + 5 + 1, 14, 261)
    small = Layout(key="s", height=None, width=None, boxes=(Box(4, 0.0, 0.0, 1.0, 1.0),))
    tokens = tokenizer.encode(small)
    assert tokens.tolist() == [0, 255, 256 + 4] + [261] * 9 + [0, 255]
    many = _random_layout(torch.Generator().manual_seed(1), 9, 5)
    kept = tokenizer.decode(tokenizer.encode(many)).boxes
    areas = sorted((tokenizer.decode(tokenizer.encode(Layout("o", None, None, (b,)))).boxes[0].area
                    for b in many.boxes), reverse=True)
    assert [box.area for box in kept] == pytest.approx(areas[:4])
    batch = tokenizer.encode_batch([small, many])
    assert batch.shape == (2, 14) and batch.min() >= 0 and batch.max() < tokenizer.vocab_size


def test_tokenizer_window_drops_boxes_outside_and_rejects_bad_tokens():
    tokenizer = LayoutTokenizer(LayoutTokenizerConfig(num_classes=3, grid=11, max_boxes=2))
    layout = Layout(key="w", height=None, width=None, boxes=(Box(0, 0.0, 0.0, 0.2, 0.2), Box(1, 0.6, 0.6, 0.9, 0.8)))
    tokens = tokenizer.encode(layout, window=(0.5, 0.5, 1.0, 1.0))
    assert [box.class_id for box in tokenizer.decode(tokens).boxes] == [1]
    assert tokenizer.decode_window(tokens) == (0.5, 0.5, 1.0, 1.0)
    with pytest.raises(InvalidInput, match=r"layout tokens 0..2: .* is not a \(position, position, class\) triple"):
        tokenizer.decode(torch.tensor([121, 0, 121] + [124] * 3 + [0, 120]))
    with pytest.raises(InvalidInput, match=r"shape \(7,\), expected \(8,\)"):
        tokenizer.decode(tokens[:7])
    with pytest.raises(InvalidInput, match="class_id 3 is not below the tokenizer's num_classes 3"):
        tokenizer.encode(Layout(key="x", height=None, width=None, boxes=(Box(3, 0, 0, 1, 1),)))


def test_largest_grid_fits_the_paper_vocabulary():
    assert largest_grid(80) == 90  # COCO things: 8100 + 80 + 1 = 8181 <= 8192
    for classes in (80, 183, 601):
        grid = largest_grid(classes)
        assert grid**2 + classes + 1 <= 8192 < (grid + 1) ** 2 + classes + 1


def test_label_map_with_two_rectangles_gives_those_boxes():
    label_map = np.zeros((16, 24), dtype=np.int64)  # [H x W], non-square
    label_map[2:6, 3:11] = 4
    label_map[9:15, 12:22] = 7
    label_map[0, 23] = 7  # one pixel: below min_area
    boxes = boxes_from_label_map(label_map, min_area=2)
    assert boxes == (Box(4, 3 / 24, 2 / 16, 11 / 24, 6 / 16), Box(7, 12 / 24, 9 / 16, 22 / 24, 15 / 16))
    with_background = boxes_from_label_map(label_map, min_area=2, background=None)
    assert Box(0, 0.0, 0.0, 1.0, 1.0) in with_background and len(with_background) == 3
    diagonal = np.eye(4, 6, dtype=np.int64) * 2  # pixels touching at corners are one region (8-connected)
    assert boxes_from_label_map(diagonal) == (Box(2, 0.0, 0.0, 4 / 6, 1.0),)
