"""Stage `degrade`: pair shards independent of worker count, records, report, grid."""

from __future__ import annotations

from pathlib import Path

import pytest
import webdataset as wds
from PIL import Image

from stages.degrade import Paths, main, run, sample_seed
from stages.params import parse_params


@pytest.fixture(scope="module")
def images(tmp_path_factory, embedded_images) -> Path:
    return embedded_images(tmp_path_factory.mktemp("images"), {"resolution": 32, "shard_size": 24}, 48, 16)


def _run(images: Path, out: Path, **degrade) -> dict:
    params = parse_params({"data": {"resolution": 32}, "degrade": degrade})
    return run(params, Paths(images, out / "pairs", out / "degrade.json", out / "degrade.png"))


def test_output_does_not_depend_on_workers(images, tmp_path):
    one = _run(images, tmp_path / "one", workers=1, grid_pairs=4)
    two = _run(images, tmp_path / "two", workers=2, grid_pairs=4)
    assert one["shards"] == two["shards"]
    assert one["counts"] == {"train": 48, "val": 16}


def test_pairs_hold_hr_lr_and_the_record(images, tmp_path):
    report = _run(images, tmp_path, variant="bsr", scale=4, degradations_per_image=2, grid_pairs=4)
    assert report["counts"] == {"train": 96, "val": 32}
    samples = list(wds.WebDataset(sorted(str(p) for p in (tmp_path / "pairs").glob("val-*.tar")), shardshuffle=False).decode("rgb8"))
    first = samples[0]
    assert first["hr.png"].shape == (32, 32, 3) and first["lr.png"].shape == (8, 8, 3)
    record = first["json"]["degradation"]
    assert record["variant"] == "bsr" and record["scale"] == 4
    assert record["seed"] == sample_seed(0, first["json"]["source_key"], 0)
    assert {s["__key__"].rsplit("_d", 1)[1] for s in samples} == {"0", "1"}
    assert report["operations"]["jpeg"] >= 128  # the final JPEG always runs
    assert set(report["psnr_bicubic_up_db"]) == {"min", "p25", "median", "p75", "max"}
    grid = Image.open(tmp_path / "degrade.png")
    assert grid.size[0] > grid.size[1] > 0


def test_moderated_variant_degrades_less(images, tmp_path):
    light = _run(images, tmp_path / "light", variant="bsr_light", grid_pairs=4)
    original = _run(images, tmp_path / "bsr", variant="bsr", grid_pairs=4)
    assert light["psnr_bicubic_up_db"]["median"] > original["psnr_bicubic_up_db"]["median"]


def test_seed_changes_the_pairs(images, tmp_path):
    base = _run(images, tmp_path / "a", grid_pairs=4)
    other = _run(images, tmp_path / "b", seed=7, grid_pairs=4)
    assert base["shards"] != other["shards"]


def test_missing_images_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "params.yaml").write_text("degrade:\n  scale: 4\n")
    code = main(["--params", str(tmp_path / "params.yaml"), "--images", str(tmp_path / "none"), "--out", str(tmp_path / "pairs"),
                 "--report", str(tmp_path / "r.json"), "--grid", str(tmp_path / "g.png")])
    assert code == 2 and "run the download stage first" in capsys.readouterr().err
    assert not (tmp_path / "pairs").exists()


def test_bad_scale_is_rejected_before_work(tmp_path):
    from stages.params import ParamsError

    with pytest.raises(ParamsError, match=r"degrade.scale: must be one of 2, 3, 4 or 8, got 5"):
        parse_params({"degrade": {"scale": 5}})


def test_scale_too_large_for_the_resolution_is_a_clear_error(images, tmp_path, capsys):
    (tmp_path / "params.yaml").write_text("data:\n  resolution: 32\ndegrade:\n  scale: 8\n")
    code = main(["--params", str(tmp_path / "params.yaml"), "--images", str(images), "--out", str(tmp_path / "pairs"),
                 "--report", str(tmp_path / "r.json"), "--grid", str(tmp_path / "g.png")])
    assert code == 2 and "degrade.scale 8 needs images of at least 64 px" in capsys.readouterr().err
