"""Stage `evaluate`, `ldm sample` and `ldm upscale` on briefly trained tiny models."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from flows.cli import main as ldm
from stages import train_ldm
from stages.evaluate import Paths, run
from stages.params import parse_params

DATA = {"resolution": 64, "shard_size": 40}
SHORT = {"steps": 4, "batch_size": 8, "val_every": 4, "checkpoint_every": 4, "threads": 1}
FAST = {"samples": 8, "batch_size": 8, "sr_samples": 4, "feature_extractor": "random-conv", "grid_images": 8, "threads": 1,
        "sampling": {"sampler": "ddim", "steps": 4, "guidance_scale": 2.0}, "sr_sampling": {"sampler": "ddim", "steps": 4}}


@pytest.fixture(scope="module")
def models(ldm_inputs, tmp_path_factory) -> Path:
    """models/ with the untrained autoencoder, a class LDM and an SR LDM trained for a few batches."""
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    root = tmp_path_factory.mktemp("eval")
    shutil.copytree(ldm_inputs / "models", root / "models")
    for section, name in (("train_ldm", "ldm"), ("train_sr", "ldm_sr")):
        extra = {"first_stage": "kl-f4-tiny"} if section == "train_sr" else {}
        params = parse_params({"data": DATA, section: {**SHORT, **extra}})
        train_ldm.run(params, train_ldm.Paths(ldm_inputs / "latents", root / "models" / "autoencoder", root / "models" / name,
                                              root / "ckpt" / name, root / f"{name}.json", root / f"{name}.csv", section))
    return root / "models"


def _evaluate(ldm_inputs: Path, models: Path, out: Path, **overrides) -> dict:
    params = parse_params({"data": DATA, "evaluate": {**FAST, **overrides}})
    return run(params, Paths(models, ldm_inputs / "images", ldm_inputs / "pairs", out / "evaluate.json", out / "grids", out / "cache"))


def test_evaluate_scores_samples_sr_and_records_every_setting(ldm_inputs, models, tmp_path):
    report = _evaluate(ldm_inputs, models, tmp_path)
    assert {"fid", "kid_mean", "isc_mean", "precision", "recall"} <= set(report["ldm"])
    assert report["ldm"]["sampling"] == {"sampler": "ddim", "steps": 4, "eta": 0.0, "spacing": "uniform", "final_alpha": "one",
                                           "guidance_scale": 2.0}
    assert report["ldm"]["samples"] == 8 and report["ldm"]["reference"]["images"] == 48
    assert report["feature_extractor"]["feature_extractor"] == "random-conv" and report["feature_extractor"]["weights_sha256"]
    assert "stand-in" in report["stand_ins"]["random-conv"]
    assert report["autoencoder"]["rfid"] >= 0
    sr = report["sr"]
    assert sr["pairs"] == 4 and {"psnr", "ssim"} <= set(sr) and {"psnr", "ssim"} <= set(sr["bicubic"])
    assert {"fid", "isc_mean", "isc_std"} <= set(sr) and {"fid", "isc_mean", "isc_std"} <= set(sr["bicubic"])  # Tab. 11
    assert sr["fid_reference"]["split"] == "val" and sr["fid_reference"]["images"] == 16  # every val pair's HR image
    assert sr["fid"] != sr["bicubic"]["fid"] and sr["isc_mean"] > 1.0 and sr["bicubic"]["isc_mean"] > 1.0
    assert report["skipped"] == {}
    for grid in ("samples.png", "sr.png"):
        assert Image.open(tmp_path / "grids" / grid).size[0] > 64
    assert json.loads((tmp_path / "evaluate.json").read_text())["ldm"]["fid"] == report["ldm"]["fid"]
    assert list((tmp_path / "cache").iterdir()), "reference statistics are cached"


def test_missing_inception_is_reported_as_skipped_and_the_rest_runs(ldm_inputs, models, tmp_path):
    report = _evaluate(ldm_inputs, models, tmp_path, feature_extractor="inception-v3-compat",
                       inception_weights=str(tmp_path / "absent.pth"))
    assert "absent.pth" in report["skipped"]["ldm_fidelity"] and "rfid" in report["skipped"]
    assert "absent.pth" in report["skipped"]["sr_fidelity"]
    assert "fid" not in report["ldm"] and "psnr" in report["sr"] and "fid" not in report["sr"]["bicubic"]


def test_sr_fid_against_the_train_split_and_too_few_pairs(ldm_inputs, models, tmp_path):
    train = _evaluate(ldm_inputs, models, tmp_path / "train", sr_reference_split="train")["sr"]
    assert train["fid_reference"]["split"] == "train" and train["fid_reference"]["images"] == 48  # Tab. 11's ‡
    assert {"fid", "isc_mean"} <= set(train) and {"fid", "isc_mean"} <= set(train["bicubic"])
    few = _evaluate(ldm_inputs, models, tmp_path / "few", sr_samples=2)
    assert "at least 4" in few["skipped"]["sr_fidelity"] and "evaluate.sr_samples" in few["skipped"]["sr_fidelity"]
    assert "fid" not in few["sr"] and few["sr"]["fid_reference"] == {"split": "val"} and "fid" in few["ldm"]


def test_samples_do_not_depend_on_the_batch_size(ldm_inputs, models, tmp_path):
    one = tmp_path / "one"
    two = tmp_path / "two"
    common = ["sample", "--models", str(models), "-n", "3", "--class", "2", "--steps", "3", "--seed", "5"]
    assert ldm([*common, "--batch-size", "3", "-o", str(one)]) == 0
    assert ldm([*common, "--batch-size", "1", "-o", str(two)]) == 0
    for name in ("000005.png", "000007.png"):
        a, b = np.asarray(Image.open(one / name), dtype=int), np.asarray(Image.open(two / name), dtype=int)
        assert np.abs(a - b).max() <= 1  # float rounding between batch layouts may move a pixel by one level
    settings = json.loads((one / "settings.json").read_text())
    assert settings["class"] == 2 and settings["sampler"] == "ddim" and settings["guidance_scale"] == 2.0


@pytest.mark.parametrize("argv,message", [
    (["--prompt", "a cat"], "--prompt is for text models"),
    ([], "pass --class"),
    (["--class", "99"], "class ids must be in 0..15"),
    (["--class", "1", "--steps", "5000"], "exceeds the model's T"),
    (["--class", "1", "--guidance", "-1"], "guidance scale must be >= 0"),
])
def test_sample_bad_input_is_one_line(models, tmp_path, capsys, argv, message):
    assert ldm(["sample", "--models", str(models), "-o", str(tmp_path / "s"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.startswith("error: ")


def test_missing_model_folder_is_a_clear_error(tmp_path, capsys):
    assert ldm(["sample", "--models", str(tmp_path / "none"), "--class", "1", "-o", str(tmp_path / "s")]) == 2
    assert "model.safetensors: no such file" in capsys.readouterr().err


def test_upscale_any_image_tiled(models, tmp_path):
    rng = np.random.default_rng(0)
    source = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 255, (20, 36, 3), dtype=np.uint8)).save(source)  # non-square, not a tile multiple
    out = tmp_path / "up.png"
    assert ldm(["upscale", "--models", str(models), str(source), "-o", str(out), "--tile", "16", "--overlap", "4",
                "--steps", "3"]) == 0
    assert Image.open(out).size == (36 * 4, 20 * 4)


def test_unknown_sampler_is_refused(models, tmp_path):
    with pytest.raises(SystemExit):
        ldm(["sample", "--models", str(models), "--class", "1", "--sampler", "euler", "-o", str(tmp_path)])
