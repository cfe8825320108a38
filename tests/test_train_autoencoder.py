"""Stage `train_autoencoder`: KL and VQ through the same stage, resume, health metrics, clear errors."""

from __future__ import annotations

import csv
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from ldm.autoencoder import load_autoencoder
from stages.params import ParamsError, parse_params
from stages.train_autoencoder import Paths, run

DATA = {"resolution": 32, "shard_size": 30}
SHORT = {"steps": 6, "batch_size": 8, "val_every": 3, "checkpoint_every": 3, "threads": 1, "grid_images": 4,
         "recipe": {"decay_steps": 6}}


@pytest.fixture(autouse=True, scope="module")
def _quiet():
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)


@pytest.fixture(scope="module")
def images(tmp_path_factory, embedded_images) -> Path:
    return embedded_images(tmp_path_factory.mktemp("ae-images"), DATA, 40, 12)


def _paths(out: Path, images: Path) -> Paths:
    return Paths(images, out / "model", out / "ckpt", out / "metrics.json", out / "loss.csv", out / "grid.png")


def _run(images: Path, out: Path, preset: str = "kl-f4-tiny", **overrides) -> dict:
    params = parse_params({"data": DATA, "autoencoder": {"preset": preset},
                           "train_autoencoder": {**SHORT, **overrides}})
    return run(params, _paths(out, images))


def test_kl_stage_writes_weights_config_metrics_grid_and_curve(images, tmp_path, recwarn):
    metrics = _run(images, tmp_path)
    assert not [w for w in recwarn if "exists and is not empty" in str(w.message)]  # its own run.json is no stranger
    assert metrics["train"]["batches"] == 6 and metrics["val_images"] == 12
    assert {"psnr", "ssim", "latent", "skipped", "warnings"} <= set(metrics)
    assert len(metrics["latent"]["std_per_channel"]) == 3
    assert "lpips" in metrics["skipped"] and metrics["lineage"]["inputs_sha256"]["images"]
    assert "weights-inception-2015-12-05-6726825d.pth" in metrics["skipped"]["rfid"]
    model, card = load_autoencoder(tmp_path / "model")
    assert card.preset == "kl-f4-tiny" and card.resolution == 32 and card.data_sha256
    assert set(load_file(str(tmp_path / "model" / "model.safetensors"))) == set(model.state_dict())
    rows = list(csv.DictReader((tmp_path / "loss.csv").open()))
    assert rows and {"step", "loss", "rec"} == set(rows[0])
    assert (tmp_path / "grid.png").stat().st_size > 0


def test_vq_trains_through_the_same_stage_by_one_param(images, tmp_path):
    metrics = _run(images, tmp_path, preset="vq-f4-tiny")
    assert metrics["preset"] == "vq-f4-tiny"
    assert metrics["codebook"]["size"] == 512 and 0 <= metrics["codebook"]["dead_fraction"] <= 1


def test_an_interrupted_run_resumes_from_its_checkpoint(images, tmp_path):
    _run(images, tmp_path, steps=3, recipe={"decay_steps": 6})  # stands for a run cut off after 3 batches
    assert (tmp_path / "ckpt" / "last.ckpt").is_file()
    resumed = _run(images, tmp_path, steps=6, recipe={"decay_steps": 6})
    assert resumed["train"]["resumed_from"] is None  # other steps: other settings, a fresh start
    again = _run(images, tmp_path, steps=6, recipe={"decay_steps": 6})
    assert again["train"]["resumed_from"].endswith("last.ckpt") and again["train"]["batches"] == 6


def test_resolution_not_divisible_by_f_is_refused_before_work():
    with pytest.raises(ParamsError, match="data.resolution: 40 is not a multiple of the downsampling factor f=16"):
        parse_params({"data": {"resolution": 40}, "autoencoder": {"preset": "kl-f16"}, "train_autoencoder": SHORT})


def test_unknown_preset_is_a_params_error():
    with pytest.raises(ParamsError, match="autoencoder.preset"):
        parse_params({"autoencoder": {"preset": "kl-f5"}})


def test_lpips_without_vgg_weights_names_the_file(images, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "stages.train_autoencoder", "--params", str(_params_file(tmp_path, perceptual=1.0)),
         "--images", str(images), "--model", str(tmp_path / "m"), "--checkpoints", str(tmp_path / "c"),
         "--metrics", str(tmp_path / "x.json"), "--curves", str(tmp_path / "l.csv"), "--grid", str(tmp_path / "g.png")],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "vgg16-397923af.pth" in result.stderr and "perceptual_weight" in result.stderr


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(images, tmp_path):
    from ldm.trainer import NonFiniteLossError

    with pytest.raises(NonFiniteLossError, match=r"4 steps in a row \(limit max_bad_steps=3\).*last good checkpoint is .*last.ckpt"):
        _run(images, tmp_path, checkpoint_every=1, recipe={"decay_steps": 6, "lr": 1.0e30})  # diverges after a step
    assert (tmp_path / "ckpt" / "last.ckpt").is_file() and not (tmp_path / "model").exists()


def _params_file(tmp_path: Path, perceptual: float) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"data": DATA, "train_autoencoder": {**SHORT, "vgg_weights": str(tmp_path / "nope.pth"),
                                                                        "recipe": {"perceptual_weight": perceptual}}}))
    return path


def test_health_warns_on_a_collapsed_latent(images, tmp_path):
    from ldm.autoencoder.report import _scale_warnings

    assert any("outside" in w for w in _scale_warnings(50.0, torch.ones(3)))
    assert any("carry no information" in w for w in _scale_warnings(1.0, torch.tensor([1.0, 0.0, 1.0])))
    assert json.dumps(_scale_warnings(1.0, torch.ones(3))) == "[]"
