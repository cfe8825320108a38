"""Inpainting masks: the seeded large-mask generator, its params, and stage `masks` (shards, report, grid)."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ldm.data.schema import MaskSample
from ldm.data.shards import read_shards
from ldm.errors import InvalidInput
from ldm.masks import KINDS, MaskConfig, draw_mask, fit_coverage, zip_masks
from stages import download
from stages.masks import Paths, main, run
from stages.params import ParamsError, parse_params

SHARES = {"thick": 0.3, "medium": 0.3, "thin": 0.2, "box": 0.2}


def _config(**changes) -> MaskConfig:
    return MaskConfig(**{"proportions": SHARES, "min_coverage": 0.05, "max_coverage": 0.5, "attempts": 10, **changes})


# ------------------------------------------------------------------ the generator

def test_a_mask_is_its_seed_alone():
    """Same seed, same bytes; another seed, another mask; height and width are not swapped."""
    mask, record = draw_mask(24, 40, _config(), seed=123)
    again, record_again = draw_mask(24, 40, _config(), seed=123)
    assert mask.shape == (24, 40) and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
    assert mask.tobytes() == again.tobytes() and record == record_again
    assert any(draw_mask(24, 40, _config(), seed=s)[0].tobytes() != mask.tobytes() for s in range(124, 127))
    assert record.coverage == pytest.approx(mask.mean()) and record.seed == 123


def test_kinds_appear_in_their_proportions():
    """Over 600 seeds each kind's share is within 0.06 of its proportion (3.2 standard errors at p = 0.3, n = 600);
    a kind of proportion 0 never appears."""
    counts = Counter(draw_mask(64, 64, _config(), seed=s)[1].kind for s in range(600))
    for kind in KINDS:
        assert abs(counts[kind] / 600 - SHARES[kind]) < 0.06, counts
    halves = _config(proportions={"thick": 0.0, "medium": 0.5, "thin": 0.0, "box": 0.5})
    assert {draw_mask(64, 64, halves, seed=s)[1].kind for s in range(200)} == {"medium", "box"}


def test_coverage_stays_within_bounds():
    """Tight bounds and one draw force most masks to be fitted; every one ends within the bounds."""
    config = _config(min_coverage=0.2, max_coverage=0.25, attempts=1)
    records = [draw_mask(48, 32, config, seed=s)[1] for s in range(300)]
    assert all(0.2 <= r.coverage <= 0.25 for r in records)
    assert sum(r.adjusted for r in records) > 150
    assert all(r.attempts == 1 for r in records)


def test_fit_coverage_grows_around_the_hole_and_shrinks_inside_it():
    """Growing keeps every hole pixel and adds the nearest ones; shrinking only removes hole pixels."""
    mask = np.zeros((20, 30), np.uint8)
    mask[8:12, 10:14] = 1  # 16 pixels
    grown = fit_coverage(mask, 40, 60)
    assert grown.sum() == 40 and (grown >= mask).all()
    assert grown[:, :6].sum() == 0 and grown[:, 20:].sum() == 0  # the nearest pixels, not the first in raster order
    shrunk = fit_coverage(mask, 0, 5)
    assert shrunk.sum() == 5 and (shrunk <= mask).all()
    assert fit_coverage(mask, 10, 20) is mask


@pytest.mark.parametrize(("masks", "expected"), [
    ({"proportions": {"thick": -0.1}}, "params.yaml: masks.proportions.thick: must be greater than or equal to 0, got -0.1"),
    ({"proportions": {"box": 0.3}}, "params.yaml: masks.proportions: must sum to 1, got 1.1 "
                                    "(thick 0.3 + medium 0.3 + thin 0.2 + box 0.3)"),
    ({"proportions": {"blob": 0.1}}, "params.yaml: masks.proportions.blob: unknown key; allowed here: box, medium, thick, thin"),
    ({"min_coverage": 0.6}, "params.yaml: masks: coverage bounds must satisfy 0 <= min_coverage < max_coverage <= 1, "
                            "got min_coverage 0.6, max_coverage 0.5"),
])
def test_bad_mask_params_are_one_line_naming_the_key(masks, expected):
    with pytest.raises(ParamsError) as info:
        parse_params({"masks": masks})
    assert str(info.value) == expected


# ------------------------------------------------------------------ the stage

@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("images")
    params = parse_params({"data": {"resolution": 32, "shard_size": 24},
                           "download": {"embedded": {"train_crops": 48, "val_crops": 16}}})
    download.run(params, download.Paths(out / "images", out / "download.json", out / "cache"))
    return out / "images"


def _run(images: Path, out: Path, **masks) -> dict:
    params = parse_params({"masks": {"grid_images": 4, **masks}})
    return run(params, Paths(images, out / "masks", out / "masks.json", out / "masks.png"))


def test_shards_do_not_depend_on_workers(images, tmp_path):
    """1 and 2 local processes write byte-identical shards, one per image shard, named alike."""
    one = _run(images, tmp_path / "one", workers=1)
    two = _run(images, tmp_path / "two", workers=2)
    assert one["shards"] == two["shards"]
    assert sorted(one["shards"]) == sorted(p.name for p in images.glob("*.tar"))
    for name in one["shards"]:
        assert (tmp_path / "one" / "masks" / name).read_bytes() == (tmp_path / "two" / "masks" / name).read_bytes()
    assert one["tasks"]["total"] == len(one["shards"]) and two["tasks"]["workers"] == 2
    assert _run(images, tmp_path / "seeded", seed=1)["shards"] != one["shards"]


def test_masks_zip_with_their_images_and_the_report_and_grid_are_written(images, tmp_path):
    report = _run(images, tmp_path)
    assert report["counts"] == {"train": 48, "val": 16}
    assert sum(report["kinds"].values()) == 64 and set(report["kinds"]) == set(KINDS)
    assert 0.05 <= report["coverage"]["min"] <= report["coverage"]["median"] <= report["coverage"]["max"] <= 0.5
    assert report["lineage"]["params"]["masks"]["proportions"] == SHARES and "workers" not in report["lineage"]["params"]["masks"]
    names = sorted(p.name for p in images.glob("*.tar"))
    pairs = list(zip_masks([images / n for n in names], [tmp_path / "masks" / n for n in names]))
    assert len(pairs) == 64
    image, mask = pairs[0]
    assert mask.key == image.key and mask.mask.shape == image.image.shape[:2]
    assert mask.coverage == pytest.approx(mask.mask.mean()) and mask.kind in KINDS and "seed" in mask.meta
    grid = Image.open(tmp_path / "masks.png")
    assert grid.size[1] > 4 * 32 and grid.size[0] > 3 * 32  # 4 rows of image | mask | masked under titles


def test_a_mask_shard_out_of_step_with_its_images_is_refused(images, tmp_path):
    _run(images, tmp_path)
    names = sorted(p.name for p in images.glob("*.tar"))
    with pytest.raises(InvalidInput, match=r"mask shards \['train-000001.tar'\] are not the image shards"):
        list(zip_masks([images / names[0]], [tmp_path / "masks" / names[1]]))
    (tmp_path / "other").mkdir()
    shutil.copy(tmp_path / "masks" / names[1], tmp_path / "other" / names[0])  # another shard's masks under this name
    with pytest.raises(InvalidInput, match=r"train-000000.tar: mask '.+' where .+ has image '.+'; re-run the masks stage"):
        list(zip_masks([images / names[0]], [tmp_path / "other" / names[0]]))
    first = next(read_shards([tmp_path / "masks" / names[0]]))
    assert MaskSample.decode(first).encode()["mask.png"] == first["mask.png"]


def test_missing_images_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "params.yaml").write_text("masks:\n  seed: 0\n")
    code = main(["--params", str(tmp_path / "params.yaml"), "--images", str(tmp_path / "none"), "--out", str(tmp_path / "masks"),
                 "--report", str(tmp_path / "r.json"), "--grid", str(tmp_path / "g.png")])
    assert code == 2 and "run the download stage first" in capsys.readouterr().err
    assert not (tmp_path / "masks").exists() and not (tmp_path / "r.json").exists()
