"""Label maps: dataset formats read to class ids, pairing by stem, nearest crops, stand-in maps, one-hot and the rescaler."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ldm.conditioning.spatial import SpatialRescaler, one_hot
from ldm.data.images import crop_resize
from ldm.data.label_maps import (
    ADE20K,
    COCO_STUFF,
    IGNORE_INDEX,
    LabelMapFormat,
    Pairing,
    crop_resize_label_map,
    find_label_maps,
    read_label_map,
    resize_nearest,
)
from ldm.data.stand_in_maps import stand_in_label_map
from ldm.errors import InvalidInput


def _raw(values: list[int], height: int = 16, width: int = 24) -> np.ndarray:
    """A non-square [H x W] uint8 map cycling through `values` in vertical stripes."""
    return np.asarray(values, dtype=np.uint8)[np.arange(width) % len(values)][None, :].repeat(height, axis=0)


def _write(path, array: np.ndarray, mode: str = "L") -> str:
    """Save a [H x W] uint8 array as a PNG of `mode` (L: the single-channel map datasets ship)."""
    Image.fromarray(array).convert(mode).save(path)
    return str(path)


# ----------------------------------------------------------------------------- formats and reading

def test_coco_stuff_reads_ids_as_written_and_255_as_ignored(tmp_path):
    raw = _raw([0, 90, 181, 255])
    ids = read_label_map(_write(tmp_path / "coco.png", raw), COCO_STUFF)
    assert ids.shape == (16, 24) and ids.dtype == np.int64
    assert np.array_equal(ids[0, :4], [0, 90, 181, IGNORE_INDEX])


def test_ade20k_shifts_classes_down_and_ignores_zero(tmp_path):
    raw = _raw([0, 1, 150, 77])
    ids = read_label_map(_write(tmp_path / "ade.png", raw), ADE20K)
    assert np.array_equal(ids[0, :4], [IGNORE_INDEX, 0, 149, 76])
    assert ids.min() >= IGNORE_INDEX and ids.max() < ADE20K.n_classes


def test_palette_png_is_read_as_indices(tmp_path):
    image = Image.fromarray(_raw([3, 7]), mode="L").convert("P")  # palette colours differ from the indices
    image.putpalette([value for index in range(256) for value in (255 - index, index, 0)])
    image.save(tmp_path / "palette.png")
    assert np.array_equal(read_label_map(tmp_path / "palette.png", COCO_STUFF)[0, :2], [3, 7])


def test_out_of_range_value_names_file_and_value(tmp_path):
    path = _write(tmp_path / "bad.png", _raw([1, 151]))
    with pytest.raises(InvalidInput, match=r"bad\.png.*\[151\].*1\.\.150 or 0"):
        read_label_map(path, ADE20K)


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_colour_png_is_refused(tmp_path, mode):
    path = _write(tmp_path / "colour.png", _raw([1, 2]), mode)
    with pytest.raises(InvalidInput, match=rf"colour\.png: mode {mode}.*one channel"):
        read_label_map(path, COCO_STUFF)


def test_jpeg_is_refused(tmp_path):
    Image.fromarray(_raw([1, 2])).save(tmp_path / "map.jpg")
    with pytest.raises(InvalidInput, match=r"map\.jpg: is JPEG"):
        read_label_map(tmp_path / "map.jpg", COCO_STUFF)


def test_format_round_trips_and_rejects_ignore_among_classes():
    assert LabelMapFormat.from_dict(ADE20K.to_dict()) == ADE20K
    with pytest.raises(ValueError, match="ignore_raw 5"):
        LabelMapFormat(name="bad", n_classes=10, ignore_raw=5, offset=0)


# ----------------------------------------------------------------------------- pairing

def _folders(tmp_path, images: list[str], maps: list[str]):
    for folder, names in (("images", images), ("maps", maps)):
        for name in names:
            (tmp_path / folder / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / folder / name).write_bytes(b"")
    return tmp_path / "images", tmp_path / "maps"


def test_pairs_by_stem_in_subfolders(tmp_path):
    images, maps = _folders(tmp_path, ["a.jpg", "sub/b.png"], ["a.png", "sub/b.png"])
    pairing = find_label_maps(images, maps)
    assert [(p.key, p.image.endswith("a.jpg"), p.label_map.endswith("a.png")) for p in pairing.pairs][0] == ("a", True, True)
    assert [p.key for p in pairing.pairs] == ["a", "sub/b"]
    assert Pairing.from_dict(pairing.to_dict()) == pairing


def test_missing_map_is_one_line_error_naming_it(tmp_path):
    images, maps = _folders(tmp_path, ["a.jpg", "b.jpg"], ["a.png", "c.png"])
    with pytest.raises(InvalidInput) as error:
        find_label_maps(images, maps)
    message = str(error.value)
    assert "\n" not in message and "for b" in message and "for the maps c" in message


def test_intersect_policy_keeps_pairs_and_reports_the_rest(tmp_path):
    images, maps = _folders(tmp_path, ["a.jpg", "b.jpg"], ["a.png", "c.png"])
    pairing = find_label_maps(images, maps, policy="intersect")
    assert [p.key for p in pairing.pairs] == ["a"]
    assert pairing.images_without_map == ("b",) and pairing.maps_without_image == ("c",)


# ----------------------------------------------------------------------------- cropping

def test_crop_uses_the_image_box_and_never_blends_ids():
    rng = np.random.default_rng(0)
    label_map = rng.integers(0, 5, size=(40, 60))
    box = (4, 10, 30)  # (top, left, size), as ldm.data.images cuts it
    crop = crop_resize_label_map(label_map, box, 16)
    assert crop.shape == (16, 16) and set(np.unique(crop)) <= set(range(5))
    image = np.repeat(label_map[..., None].astype(np.uint8) * 50, 3, axis=-1)
    assert crop_resize(image, box, 16).shape[:2] == crop.shape
    # Same size: the crop is exactly the boxed pixels.
    assert np.array_equal(crop_resize_label_map(label_map, (4, 10, 30), 30), label_map[4:34, 10:40])


def test_nearest_resize_keeps_non_square_layout():
    label_map = np.zeros((16, 24), dtype=np.int64)
    label_map[:, 12:] = 1  # right half
    resized = resize_nearest(label_map, (8, 12))
    assert resized.shape == (8, 12) and resized[:, :6].max() == 0 and resized[:, 6:].min() == 1
    assert np.array_equal(resize_nearest(resized, (16, 24)), label_map)


def test_crop_outside_the_map_is_refused():
    with pytest.raises(ValueError, match="leaves the 16x24 map"):
        crop_resize_label_map(np.zeros((16, 24), dtype=np.int64), (0, 0, 20), 8)


# ----------------------------------------------------------------------------- stand-in maps

@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    from skimage.data import astronaut as load

    return load()[::2, ::2]  # 256 x 256 x 3: half the pixels, the same regions


def test_stand_in_is_seeded_and_byte_identical(astronaut):
    first = stand_in_label_map(astronaut, n_regions=6, seed=3)
    assert first.tobytes() == stand_in_label_map(astronaut, n_regions=6, seed=3).tobytes()
    assert first.shape == astronaut.shape[:2] and np.unique(first).size == 6


def test_stand_in_uses_exactly_n_regions_ordered_by_lightness(astronaut):
    from skimage.color import rgb2lab

    label_map = stand_in_label_map(astronaut, n_regions=6, seed=3, position_weight=0.5)
    assert np.array_equal(np.unique(label_map), np.arange(6))
    lightness = rgb2lab(astronaut)[..., 0]
    means = [lightness[label_map == region].mean() for region in range(6)]
    assert means == sorted(means)


def test_stand_in_refuses_more_regions_than_colours():
    flat = np.full((8, 12, 3), 100, dtype=np.uint8)
    flat[:, 6:] = 200
    with pytest.raises(InvalidInput, match="2 distinct colours"):
        stand_in_label_map(flat, n_regions=3, seed=0)


# ----------------------------------------------------------------------------- one-hot and the rescaler

def test_one_hot_sums_to_one_except_where_ignored():
    label_map = torch.randint(0, 182, (2, 16, 24), generator=torch.Generator().manual_seed(0))
    label_map[0, :4, :5] = IGNORE_INDEX
    vectors = one_hot(label_map, 182)
    assert vectors.shape == (2, 182, 16, 24)
    sums = vectors.sum(dim=1)
    assert torch.all(sums[0, :4, :5] == 0) and int(sums.sum()) == 2 * 16 * 24 - 20
    labelled = label_map != IGNORE_INDEX
    assert torch.equal(vectors.argmax(dim=1)[labelled], label_map[labelled])


def test_one_hot_refuses_ids_out_of_range():
    with pytest.raises(ValueError, match="0..9"):
        one_hot(torch.full((1, 2, 3), 10), 10)


def test_rescaler_of_the_semantic_model_has_546_parameters_and_quarter_size(one_thread):
    rescaler = SpatialRescaler(n_stages=2, method="bilinear", multiplier=0.5, in_channels=182, out_channels=3, bias=False)
    assert sum(p.numel() for p in rescaler.parameters()) == 546
    assert rescaler(torch.rand(2, 182, 64, 64)).shape == (2, 3, 16, 16)
    assert rescaler(torch.rand(1, 182, 32, 48)).shape == (1, 3, 8, 12)  # height and width kept apart


def test_rescaler_without_conv_is_bilinear_halving(one_thread):
    rescaler = SpatialRescaler(n_stages=1, in_channels=3)
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    expected = x.reshape(2, 3, 2, 2, 3, 2).mean(dim=(3, 5))  # halving at pixel centres averages 2x2 blocks
    assert rescaler.out_channels == 3 and not list(rescaler.parameters())
    torch.testing.assert_close(rescaler(x), expected)
