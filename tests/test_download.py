"""Stage `download`: embedded crops, image folders with bad inputs, verified manifests."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from ldm.data.embedded import PHOTOS, load_photo, split_region
from stages.download import Paths, main, run
from stages.params import parse_params


def _params(**download) -> object:
    return parse_params({"data": {"resolution": 32, "shard_size": 40}, "download": download})


def _paths(tmp_path: Path) -> Paths:
    return Paths(tmp_path / "images", tmp_path / "report.json", tmp_path / "cache")


def _samples(folder: Path, split: str) -> list[dict]:
    urls = [str(p) for p in sorted(folder.glob(f"{split}-*.tar"))]
    return list(wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode("rgb8"))


def _write_params(path: Path, download: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"data": {"resolution": 32, "shard_size": 40}, "download": download}))
    return path


def _cli(params: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "stages.download", "--params", str(params), "--out", str(tmp_path / "images"),
               "--report", str(tmp_path / "r.json"), "--cache", str(tmp_path / "cache")]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


# ------------------------------------------------------------------- embedded


def test_embedded_is_deterministic_and_readable(tmp_path):
    params = _params(embedded={"train_crops": 64, "val_crops": 32})
    first = run(params, _paths(tmp_path / "a"))
    second = run(params, _paths(tmp_path / "b"))
    assert first["shards"] == second["shards"]
    assert first["counts"] == {"train": 64, "val": 32}
    assert sorted(first["shards"]) == ["train-000000.tar", "train-000001.tar", "val-000000.tar"]
    samples = _samples(tmp_path / "a" / "images", "train")
    assert len(samples) == 64 and len({s["__key__"] for s in samples}) == 64
    sample = samples[0]
    assert sample["png"].shape == (32, 32, 3) and sample["png"].dtype == np.uint8
    assert sample["json"]["class_name"] == PHOTOS[sample["cls"]].name
    assert sample["txt"] == PHOTOS[sample["cls"]].caption
    other = run(_params(seed=1, embedded={"train_crops": 64, "val_crops": 32}), _paths(tmp_path / "c"))
    assert other["shards"]["train-000000.tar"] != first["shards"]["train-000000.tar"]


def test_embedded_val_never_overlaps_train(tmp_path):
    run(_params(embedded={"train_crops": 160, "val_crops": 64}), _paths(tmp_path))
    for split in ("train", "val"):
        for sample in _samples(tmp_path / "images", split):
            meta = sample["json"]
            height, width = meta["original_size"]
            top, left, h, w = split_region(height, width, split, 0.25)
            row, col, size, _ = meta["crop_box"]
            assert top <= row and row + size <= top + h and left <= col and col + size <= left + w, (split, meta)


def test_embedded_crops_come_from_the_named_photo(tmp_path):
    run(_params(embedded={"train_crops": 16, "val_crops": 16, "max_scale": 1.0}), _paths(tmp_path))
    for sample in _samples(tmp_path / "images", "val")[:4]:
        photo = load_photo(PHOTOS[sample["cls"]])
        row, col, size, _ = sample["json"]["crop_box"]
        np.testing.assert_array_equal(sample["png"], photo[row : row + size, col : col + size])


# --------------------------------------------------------------------- folder


@pytest.fixture
def bad_folder(tmp_path) -> Path:
    """One folder holding every kind of bad input a user's data may have."""
    root = tmp_path / "photos"
    rng = np.random.default_rng(0)
    for name in ("cats", "dogs"):
        (root / name).mkdir(parents=True)
    def pixels(h, w):
        return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    for index in range(6):
        Image.fromarray(pixels(48, 64)).save(root / "cats" / f"good{index}.png")
        Image.fromarray(pixels(64, 40)).save(root / "dogs" / f"good{index}.jpg", quality=95)
    Image.fromarray(pixels(40, 40)).save(root / "cats" / "truncated.jpg")
    (root / "cats" / "truncated.jpg").write_bytes((root / "cats" / "truncated.jpg").read_bytes()[:300])
    (root / "cats" / "notes.jpg").write_text("not an image at all")
    Image.fromarray(pixels(16, 20)).save(root / "cats" / "small.png")
    Image.fromarray(pixels(40, 48)[..., 0]).save(root / "cats" / "grey.png")
    Image.fromarray(pixels(40, 48)).convert("CMYK").save(root / "cats" / "cmyk.jpg")
    Image.fromarray(rng.integers(0, 65536, (40, 48), dtype=np.uint16)).save(root / "dogs" / "deep.png")
    rgba = np.concatenate([pixels(40, 48), np.full((40, 48, 1), 128, np.uint8)], axis=-1)
    Image.fromarray(rgba, "RGBA").save(root / "dogs" / "alpha.png")
    exif = Image.Exif()
    exif[0x0112] = 8
    Image.fromarray(pixels(40, 64)).save(root / "dogs" / "rotated.jpg", exif=exif)
    shutil.copy(root / "cats" / "good0.png", root / "dogs" / "copy_of_cat.png")
    Image.fromarray(pixels(40, 40)).save(root / "dogs" / "good0.png")  # same name as good0.jpg
    (root / "dogs" / "README.txt").write_text("a text file in the folder")
    (root / "captions.jsonl").write_text(json.dumps({"file": "cats/good0.png", "caption": "a striped cat"}) + "\n")
    return root


def test_folder_bad_inputs_are_converted_or_skipped_with_reason(tmp_path, bad_folder):
    params = _params(source="folder", folder={"path": str(bad_folder), "val_fraction": 0.3})
    report = run(params, _paths(tmp_path))
    skipped = {row["input"]: row["reason"] for row in report["skipped"]}
    assert skipped == {
        "cats/notes.jpg": "not an image (no decoder recognises its content)",
        "cats/small.png": "16x20 is smaller than data.resolution 32",
        "cats/truncated.jpg": skipped["cats/truncated.jpg"],
        "dogs/copy_of_cat.png": "same content as cats/good0.png",
    }
    assert report["ignored"] == [{"input": "dogs/README.txt", "reason": "extension '.txt' is not an image extension"}]
    assert skipped["cats/truncated.jpg"].startswith("corrupt or truncated image")
    converted = {row["input"]: row["notes"] for row in report["converted"]}
    assert converted["cats/grey.png"] == ["mode:L->RGB"]
    assert converted["cats/cmyk.jpg"] == ["mode:CMYK->RGB"]
    assert "scaled 65535->255" in converted["dogs/deep.png"][0]
    assert "alpha composited" in converted["dogs/alpha.png"][0]
    assert converted["dogs/rotated.jpg"] == ["exif_transpose:8"]
    assert report["class_names"] == ["cats", "dogs"]
    total = report["counts"]["train"] + report["counts"]["val"]
    assert total == 12 + 5 + 1  # good files, the converted five, the second good0
    samples = _samples(tmp_path / "images", "train") + _samples(tmp_path / "images", "val")
    rotated = next(s for s in samples if s["json"].get("source") == "folder:dogs/rotated.jpg")
    assert rotated["json"]["original_size"] == [64, 40]  # upright after EXIF orientation 8
    captions = {s["json"]["source"]: s["txt"] for s in samples}
    assert captions["folder:cats/good0.png"] == "a striped cat"
    assert captions["folder:cats/good1.png"] == "a photo of cats"


def test_folder_fail_mode_stops_at_first_bad_input_and_writes_nothing(tmp_path, bad_folder):
    params = _write_params(tmp_path / "params.yaml", {"source": "folder", "on_bad_input": "fail", "folder": {"path": str(bad_folder)}})
    result = _cli(params, tmp_path)
    assert result.returncode == 2
    assert "cats/notes.jpg: not an image" in result.stderr and "on_bad_input is 'fail'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "images").exists() and not (tmp_path / "r.json").exists()
    assert not list(tmp_path.glob(".images.partial-*"))


@pytest.mark.parametrize("make", ["empty", "missing", "only_text"])
def test_unusable_folder_is_a_clear_error(tmp_path, make, capsys):
    folder = tmp_path / "in"
    if make != "missing":
        folder.mkdir()
    if make == "only_text":
        (folder / "a.txt").write_text("x")
    params = _write_params(tmp_path / "params.yaml", {"source": "folder", "folder": {"path": str(folder)}})
    assert main(["--params", str(params), "--out", str(tmp_path / "images"), "--report", str(tmp_path / "r.json"),
                 "--cache", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err
    assert str(folder) in err and ("no such folder" in err or "holds no image files" in err)
    assert not (tmp_path / "images").exists()
