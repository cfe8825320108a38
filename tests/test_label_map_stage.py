"""Stage label_maps: seeded stand-in maps, folder maps (COCO-Stuff, ADE20K) cropped like their images, dataset
boxes clipped to the crop, shards that zip with their images, and label maps carried into the latent cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import pytest
from PIL import Image

from ldm.data.label_maps import IGNORE_INDEX, decode_stored_label_map, encode_label_map
from ldm.data.schema import ImageSample, LabelMapSample
from ldm.data.shards import read_shards
from ldm.errors import InvalidInput, UserError
from ldm.label_maps.pairing import zip_label_maps
from stages import download
from stages.label_maps import Paths, run
from stages.params import ParamsError, parse_params

RESOLUTION = 32


def _tars(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.tar"))}


def _run(images: Path, out: Path, **label_maps) -> dict:
    # the semantic and layout models must cover the maps' classes (182 for COCO-Stuff): params check refuses it otherwise
    covered = {"n_classes": 182}
    params = parse_params({"label_maps": {"grid_images": 4, **label_maps},
                           "train_semantic": covered, "train_layout": covered})
    return run(params, Paths(images, out / "label_maps", out / "label_maps.json", out / "label_maps.png"))


def _pairs(images: Path, maps: Path) -> list[tuple[ImageSample, LabelMapSample]]:
    names = sorted(p.name for p in images.glob("*.tar"))
    return list(zip_label_maps([images / n for n in names], [maps / n for n in names]))


def test_stored_maps_round_trip_unlabelled_and_large_ids():
    label_map = np.array([[IGNORE_INDEX, 0, 181], [65534, 7, IGNORE_INDEX]])
    assert np.array_equal(decode_stored_label_map(encode_label_map(label_map)), label_map)
    with pytest.raises(ValueError, match="label ids must lie in"):
        encode_label_map(np.array([[-2, 0]]))


# ----------------------------------------------------------------------------- embedded: the stand-in

@pytest.fixture(scope="module")
def embedded(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("embedded")
    params = parse_params({"data": {"resolution": RESOLUTION, "shard_size": 12},
                           "download": {"embedded": {"train_crops": 24, "val_crops": 8}}})
    download.run(params, download.Paths(out / "images", out / "download.json", out / "cache"))
    return out / "images"


def test_stand_in_maps_are_seeded_byte_identical_and_mirror_the_image_shards(embedded, tmp_path):
    one = _run(embedded, tmp_path / "one", workers=1)
    two = _run(embedded, tmp_path / "two", workers=2)
    other = _run(embedded, tmp_path / "other", workers=1, seed=1)
    assert _tars(tmp_path / "one" / "label_maps") == _tars(tmp_path / "two" / "label_maps")
    assert _tars(tmp_path / "one" / "label_maps") != _tars(tmp_path / "other" / "label_maps")
    assert (tmp_path / "one" / "label_maps.png").read_bytes() == (tmp_path / "two" / "label_maps.png").read_bytes()
    assert one["shards"] == two["shards"] and one["shards"] != other["shards"]
    assert sorted(_tars(tmp_path / "one" / "label_maps")) == sorted(p.name for p in embedded.glob("*.tar"))
    assert one["counts"] == {"train": 24, "val": 8} and "STAND-IN" in one["label_maps"] and "STAND-IN" in one["boxes"]
    assert one["n_classes"] == 8 and 1 <= one["classes_seen"] <= 8 and one["boxes_per_image"]["total"] > 0
    assert one["lineage"]["params"]["label_maps"]["n_regions"] == 8
    for image, found in _pairs(embedded, tmp_path / "one" / "label_maps"):
        assert found.key == image.key == found.layout.key
        assert found.label_map.shape == image.image.shape[:2] == (RESOLUTION, RESOLUTION)
        assert set(np.unique(found.label_map)) <= set(range(8))
        assert found.meta["source"] == "stand-in"
        assert all(0 <= box.class_id < 8 for box in found.layout.boxes)
    picture = Image.open(tmp_path / "one" / "label_maps.png")
    assert picture.height > 4 * RESOLUTION and picture.width > 3 * RESOLUTION


def test_a_label_map_shard_out_of_step_with_its_images_is_refused(embedded, tmp_path):
    _run(embedded, tmp_path, workers=1)
    names = sorted(p.name for p in embedded.glob("*.tar"))
    with pytest.raises(InvalidInput, match="re-run the label_maps stage"):
        list(zip_label_maps([embedded / names[0]], [tmp_path / "label_maps" / names[1]]))


# ----------------------------------------------------------------------------- a folder of images and maps

STRIPE = 8  # px: the image and its map are vertical stripes of this width, one class and one colour each
HEIGHT, WIDTH = 40, 56  # non-square: the download crops the centre 40x40 (left 8) and resizes it to 32
COLOURS = np.array([[230, 30, 30], [30, 200, 30], [30, 30, 230], [220, 220, 30], [30, 220, 220], [200, 30, 200],
                    [120, 120, 120]], dtype=np.uint8)


def _stripes() -> np.ndarray:
    """[H x W] stripe index 0..6."""
    return np.repeat((np.arange(WIDTH) // STRIPE)[None, :], HEIGHT, axis=0)


def _write_folder(root: Path, raw_of_stripe: list[int]) -> tuple[Path, Path]:
    """images/{a,b}/x.png striped in COLOURS, maps/{a,b}/x.png the stripes' raw label values."""
    images, maps = root / "images", root / "maps"
    for name, flip in (("cats/one", False), ("dogs/two", True)):
        stripes = _stripes()[:, ::-1] if flip else _stripes()
        for folder, array in ((images, COLOURS[stripes]), (maps, np.asarray(raw_of_stripe, dtype=np.uint8)[stripes])):
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(folder / f"{name}.png")
    return images, maps


def _download_folder(root: Path, images: Path) -> Path:
    params = parse_params({"data": {"resolution": RESOLUTION, "shard_size": 8},
                           "download": {"source": "folder", "workers": 1, "folder": {"path": str(images), "val_fraction": 0.0}}})
    download.run(params, download.Paths(root / "shards", root / "download.json", root / "cache"))
    return root / "shards"


@pytest.mark.parametrize("fmt, raw, ids", [
    ("coco-stuff", [0, 5, 181, 255, 91, 17, 33], [0, 5, 181, IGNORE_INDEX, 91, 17, 33]),
    ("ade20k", [1, 5, 150, 0, 91, 17, 33], [0, 4, 149, IGNORE_INDEX, 90, 16, 32]),
])
def test_folder_maps_are_read_in_their_format_and_cropped_with_their_image(tmp_path, fmt, raw, ids):
    images, maps = _write_folder(tmp_path, raw)
    shards = _download_folder(tmp_path, images)
    report = _run(shards, tmp_path, workers=1, source="folder", folder={"path": str(maps), "format": fmt})
    assert "STAND-IN" not in report["label_maps"] and report["n_classes"] == (182 if fmt == "coco-stuff" else 150)
    found = _pairs(shards, tmp_path / "label_maps")
    assert len(found) == 2
    for image, sample in found:
        assert sample.label_map.shape == (RESOLUTION, RESOLUTION)
        assert image.meta["crop_box"] == [0, 8, 40, 40]
        # Away from stripe borders, each pixel's class is the stripe whose colour the cropped image shows there.
        stripe_of_colour = {tuple(c): i for i, c in enumerate(COLOURS.tolist())}
        for col in range(RESOLUTION):
            source_col = 8 + (col + 0.5) * 40 / RESOLUTION
            if abs(source_col / STRIPE - round(source_col / STRIPE)) * STRIPE < 2:
                continue  # bicubic blends colours near a border
            stripe = stripe_of_colour[tuple(image.image[RESOLUTION // 2, col].tolist())]
            assert (sample.label_map[:, col] == ids[stripe]).all()


def test_a_folder_map_of_the_wrong_size_or_values_is_refused(tmp_path):
    images, maps = _write_folder(tmp_path, [0, 1, 2, 3, 4, 5, 6])
    shards = _download_folder(tmp_path, images)
    Image.fromarray(np.zeros((HEIGHT, WIDTH - 1), dtype=np.uint8)).save(maps / "cats" / "one.png")
    with pytest.raises(UserError, match="label map is 40x55 .* its image .* is 40x56"):
        _run(shards, tmp_path, workers=1, source="folder", folder={"path": str(maps), "format": "ids", "n_classes": 7})
    Image.fromarray(np.full((HEIGHT, WIDTH), 9, dtype=np.uint8)).save(maps / "cats" / "one.png")
    with pytest.raises(UserError, match=r"values \[9\] are out of range; allowed are 0..6 or 255"):
        _run(shards, tmp_path, workers=1, source="folder", folder={"path": str(maps), "format": "ids", "n_classes": 7})
    assert not (tmp_path / "label_maps").exists()  # nothing that looks complete


# ----------------------------------------------------------------------------- dataset boxes

def _coco(path: Path) -> None:
    images = [{"id": 1, "file_name": "one.png", "height": HEIGHT, "width": WIDTH},
              {"id": 2, "file_name": "two.png", "height": HEIGHT, "width": WIDTH}]
    annotations = [  # [x, y, w, h] px: overhangs the crop's left edge (x 8) / lies left of the crop / inside
        {"image_id": 1, "category_id": 18, "bbox": [4, 10, 20, 10], "iscrowd": 0},
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 6, 6], "iscrowd": 0},
        {"image_id": 2, "category_id": 1, "bbox": [18, 20, 20, 20], "iscrowd": 0},
    ]
    categories = [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}]
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))


def _openimages(path: Path) -> None:
    rows = ["ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsGroupOf",
            f"one,x,/m/dog,1,{4 / WIDTH},{24 / WIDTH},0.25,0.5,0",
            f"one,x,/m/person,1,0,{6 / WIDTH},0,0.15,0",
            f"two,x,/m/person,1,{18 / WIDTH},{38 / WIDTH},0.5,1.0,0"]
    path.write_text("\n".join(rows) + "\n")


@pytest.mark.parametrize("kind", ["coco", "openimages"])
def test_dataset_boxes_are_attached_clipped_to_the_crop_and_renormalised(tmp_path, kind):
    images, maps = _write_folder(tmp_path, [0, 1, 2, 3, 4, 5, 6])
    shards = _download_folder(tmp_path, images)
    (_coco if kind == "coco" else _openimages)(tmp_path / "boxes")
    report = _run(shards, tmp_path, workers=1, source="folder", folder={"path": str(maps), "format": "ids", "n_classes": 7},
                  boxes={"source": kind, "path": str(tmp_path / "boxes")})
    assert report["box_classes"]["names"] == (["person", "dog"] if kind == "coco" else ["/m/dog", "/m/person"])
    dog = 1 if kind == "coco" else 0
    person = 1 - dog
    layouts = {image.meta["source"]: sample.layout for image, sample in _pairs(shards, tmp_path / "label_maps")}
    one, two = layouts["folder:cats/one.png"], layouts["folder:dogs/two.png"]
    assert (one.height, one.width) == (RESOLUTION, RESOLUTION)
    assert [b.class_id for b in one.boxes] == [dog]  # the box left of the crop is gone
    box = one.boxes[0]
    assert np.allclose([box.x0, box.y0, box.x1, box.y1], [0.0, 0.25, 0.4, 0.5])
    box = two.boxes[0]
    assert box.class_id == person and np.allclose([box.x0, box.y0, box.x1, box.y1], [0.25, 0.5, 0.75, 1.0])


def test_box_sources_need_a_folder_and_a_file():
    with pytest.raises(ParamsError, match="needs label_maps.source 'folder'"):
        parse_params({"label_maps": {"boxes": {"source": "coco", "path": "x.json"}}})
    with pytest.raises(ParamsError, match="need the annotation file's path"):
        parse_params({"label_maps": {"source": "folder", "boxes": {"source": "openimages"}}})
    with pytest.raises(ParamsError, match="n_classes must be in 1..255 with format 'ids'"):
        parse_params({"label_maps": {"source": "folder", "folder": {"format": "ids"}}})


# ----------------------------------------------------------------------------- into the latent cache

def test_cached_latents_carry_their_label_map_and_layout_on_both_encode_paths(embedded, tmp_path, save_autoencoder):
    from ldm.data.latents import latent_sample
    from ldm.data.schema import LatentSample
    from stages import cache_latents

    _run(embedded, tmp_path, workers=1)
    model = save_autoencoder(tmp_path / "ae", "kl-f4-tiny")

    def cache(out: Path, **settings) -> dict[str, bytes]:
        params = parse_params({"data": {"resolution": RESOLUTION}, "cache_latents": {
            "accelerator": "cpu", "devices": 1, "threads": 1, "pairs": False, "masks": False, "label_maps": True,
            **settings}})
        cache_latents.run(params, cache_latents.Paths(embedded, tmp_path / "no-pairs", model, out, tmp_path / "r.json",
                                                      label_maps=tmp_path / "label_maps"))
        return _tars(out)

    lightning, pool = cache(tmp_path / "lightning"), cache(tmp_path / "pool", workers=2)
    assert lightning == pool
    maps = {found.key: found for _, found in _pairs(embedded, tmp_path / "label_maps")}
    raws = list(read_shards(sorted((tmp_path / "lightning").glob("*.tar"))))
    assert len(raws) == len(maps) == 32
    for raw in raws:
        sample = LatentSample.decode(raw)
        assert np.array_equal(sample.label_map, maps[sample.key].label_map) and sample.layout == maps[sample.key].layout
    batch = latent_sample(raws[0], scale_factor=1.0)
    assert batch["label_map"].dtype == torch.long and tuple(batch["label_map"].shape) == (RESOLUTION, RESOLUTION)
    assert json.loads(batch["layout"])["key"] == raws[0]["__key__"]
    with pytest.raises(UserError, match="cache_latents.label_maps is true but no --label-maps"):
        params = parse_params({"data": {"resolution": RESOLUTION}, "cache_latents": {"pairs": False, "masks": False, "label_maps": True}})
        cache_latents.run(params, cache_latents.Paths(embedded, tmp_path, model, tmp_path / "x", tmp_path / "r.json"))
