"""`ldm sample --layout` on an untrained tiny-layout model: the layout file read, images of the asked size, one-line
errors naming the file; the evaluation picture's pieces (boxes drawn, titled columns)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from flows.cli import main as ldm
from ldm.data.layout_draw import class_colour, draw_layout
from ldm.data.layouts import Box, Layout, save_layouts
from ldm.latent_diffusion import LatentDiffusionModel, LDMCard, preset_config, save_ldm
from ldm.latent_diffusion.layout_eval import ValLayout, layout_columns

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = ["-n", "2", "--steps", "2"]
STREET = Layout("street", 64, 96, (Box(0, 0.1, 0.25, 0.45, 0.95), Box(7, 0.5, 0.6, 0.8, 0.9)))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, save_autoencoder) -> Path:
    """A MODEL_DIR: an untrained kl-f4-tiny beside an untrained tiny-layout model in ldm_layout/."""
    root = tmp_path_factory.mktemp("sample-layout")
    shutil.copytree(save_autoencoder(root / "ae", "kl-f4-tiny"), root / "models" / "autoencoder")
    torch.manual_seed(0)
    model = LatentDiffusionModel(dataclasses.replace(preset_config("tiny-layout"), scale_factor=0.7))
    save_ldm(root / "models" / "ldm_layout", model, LDMCard(model=model.config, preset="tiny-layout"))
    return root / "models"


def test_sample_layout_writes_images_of_the_asked_size(model_dir, tmp_path):
    boxes = tmp_path / "boxes.json"
    save_layouts(boxes, [Layout("empty", None, None, ()), STREET])
    out = tmp_path / "out"
    assert ldm(["sample", "--model", str(model_dir), "--layout", str(boxes), "--index", "1", "--size", "32x48",
                *FAST, "-o", str(out)]) == 0
    with Image.open(out / "000000.png") as image:
        assert image.size == (48, 32)  # (W, H): a swapped height and width fails
    settings = json.loads((out / "settings.json").read_text())
    assert settings["layout"] == {"file": str(boxes), "index": 1, "key": "street", "boxes": 2}
    assert settings["size"] == [32, 48] and settings["guidance_scale"] == 1.0 and settings["model"].endswith("ldm_layout")


@pytest.mark.parametrize("content, index, message", [
    ([STREET.to_dict() | {"boxes": [{"class_id": 8, "x0": 0, "y0": 0, "x1": 1, "y1": 1}]}], 0,
     r"layout 0 has class ids \[8\]; the model knows 8 classes, 0..7"),
    ("{not json", 0, "not a readable JSON file"),
    ([{"key": "k", "boxes": []}], 0, r"layout 0: a layout has the keys"),
    ([STREET.to_dict()], 3, r"--index 3 is out of range; the file holds 1 layout\(s\)"),
    (None, 0, "no such layout file"),
])
def test_a_bad_layout_file_is_one_line_naming_it(model_dir, tmp_path, capsys, content, index, message):
    boxes = tmp_path / "bad.json"
    if content is not None:
        boxes.write_text(content if isinstance(content, str) else json.dumps(content))
    code = ldm(["sample", "--models", str(model_dir), "--layout", str(boxes), "--index", str(index), *FAST,
                "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and str(boxes) in err and len(err.splitlines()) == 1
    assert pytest.importorskip("re").search(message, err), err
    assert not (tmp_path / "out").exists()


def test_drawn_boxes_and_the_titled_columns():
    canvas = draw_layout(STREET, 64, 96)
    assert canvas.shape == (64, 96, 3) and canvas.dtype == np.uint8
    # the left edge of box 0 at x0 0.1 of 95 px (column 9 or 10), rows 16..59; box 7's at 47.5, rows 38..56
    assert {tuple(canvas[40, c]) for c in (9, 10)} >= {class_colour(0)}
    assert {tuple(canvas[50, c]) for c in (47, 48)} >= {class_colour(7)} and class_colour(7) != class_colour(0)
    assert tuple(canvas[30, 48]) == (255, 255, 255)  # above box 7, right of box 0
    assert tuple(canvas[2, 2]) == (255, 255, 255)  # outside every box: blank
    samples = torch.zeros(1, 3, 3, 64, 96, dtype=torch.uint8)  # (L, S, 3, H, W)
    val = ValLayout("street", STREET, np.full((32, 48, 3), 9, np.uint8))
    columns = layout_columns([val], samples, [0, 1, 2], boxes_title="boxes (stand-in)")
    assert list(columns) == ["boxes (stand-in)", "real image", "seed 0", "seed 1", "seed 2"]
    assert all(column.shape == (1, 128, 192, 3) for column in columns.values())  # enlarged x2 to a 128 px side
