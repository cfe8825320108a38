"""Stages `train_ldm` and `train_sr`: training on the cache, the scale factor carried, clear mismatch errors."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from ldm.conditioning import load_tokenizer
from ldm.errors import InvalidInput
from ldm.latent_diffusion import load_ldm
from stages.params import parse_params
from stages.train_ldm import Paths, run

DATA = {"resolution": 64, "shard_size": 40}  # as conftest.ldm_inputs
SHORT = {"steps": 12, "batch_size": 8, "val_every": 12, "checkpoint_every": 12, "threads": 1, "shuffle_buffer": 50}


@pytest.fixture(autouse=True, scope="module")
def _quiet():
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)


@pytest.fixture(scope="module")
def cache(ldm_inputs) -> Path:
    return ldm_inputs


def _paths(cache: Path, out: Path, section: str = "train_ldm", autoencoder: Path | None = None) -> Paths:
    return Paths(cache / "latents", autoencoder or cache / "models" / "autoencoder", out / "model", out / "ckpt",
                 out / "metrics.json", out / "loss.csv", section)


def _run(cache: Path, out: Path, section: str = "train_ldm", autoencoder: Path | None = None, **overrides) -> dict:
    params = parse_params({"data": DATA, section: {**SHORT, **overrides}})
    return run(params, _paths(cache, out, section, autoencoder))


def test_class_model_trains_and_saves_the_scale_factor(cache, tmp_path):
    metrics = _run(cache, tmp_path)
    stats = json.loads((cache / "latents" / "stats.json").read_text())
    assert metrics["train"]["batches"] == 12 and "scale_factor" not in metrics  # the model's config holds it, once
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["model"]["scale_factor"] == stats["scale_factor"] and config["weights"] == "ema"
    assert config["model"]["conditioning"]["kind"] == "class" and config["model"]["diffusion"]["linear_start"] == 0.0015
    assert load_ldm(tmp_path / "model").scale_factor == stats["scale_factor"]
    assert (tmp_path / "loss.csv").read_text().startswith("step,loss")
    assert "val/loss" in metrics["val"] and "val/loss_ema" in metrics["val"]


def test_saved_model_round_trips(cache, tmp_path):
    _run(cache, tmp_path)
    model, again = load_ldm(tmp_path / "model").model, load_ldm(tmp_path / "model").model
    g = torch.Generator().manual_seed(0)
    xt, t, cls = torch.randn(2, 3, 16, 16, generator=g), torch.tensor([10, 900]), torch.tensor([0, 3])
    with torch.no_grad():
        assert torch.equal(model(xt, t, cls), again(xt, t, cls))


def test_super_resolution_trains_on_pairs(cache, tmp_path):
    metrics = _run(cache, tmp_path, "train_sr", first_stage="kl-f4-tiny")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["model"]["conditioning"]["kind"] == "concat" and list(config["lineage"]["params"]) == ["train_sr"]
    assert config["sr_scale"] == 4
    assert metrics["train"]["batches"] == 12


def test_text_model_learns_a_vocabulary_from_the_captions(cache, tmp_path):
    _run(cache, tmp_path, preset="tiny-txt", recipe={"p_uncond": 0.1})
    tokenizer = load_tokenizer(tmp_path / "model" / "tokenizer")
    assert 10 < len(tokenizer) <= 1000


def test_a_cache_of_another_first_stage_names_both_sides(cache, tmp_path):
    params = parse_params({"data": DATA, "autoencoder": {"preset": "vq-f4-tiny"}, "train_sr": SHORT})
    with pytest.raises(InvalidInput, match="cache holds 'kl-f4-tiny' latents but autoencoder.preset is 'vq-f4-tiny'"):
        run(params, _paths(cache, tmp_path, "train_sr"))


def test_another_autoencoder_than_the_cache_is_refused(cache, tmp_path, save_autoencoder):
    other = save_autoencoder(tmp_path / "other-autoencoder", "kl-f4-tiny", seed=1)
    with pytest.raises(InvalidInput, match="re-run `dvc repro cache_latents`"):
        _run(cache, tmp_path, autoencoder=other)


def test_class_ids_out_of_range_are_refused(cache, tmp_path):
    with pytest.raises(InvalidInput, match=r"set train_ldm.n_classes: \d+"):
        _run(cache, tmp_path, n_classes=2)


def test_latent_shape_mismatch_names_both(cache, tmp_path):
    params = parse_params({"data": {**DATA, "resolution": 128}, "train_ldm": SHORT})
    with pytest.raises(InvalidInput, match=r"expects latents \(3, 32, 32\).*holds \(3, 16, 16\)"):
        run(params, _paths(cache, tmp_path))


def test_missing_stats_is_a_clear_error(cache, tmp_path):
    bare = tmp_path / "latents"
    shutil.copytree(cache / "latents", bare)
    (bare / "stats.json").unlink()
    params = parse_params({"data": DATA, "train_ldm": SHORT})
    with pytest.raises(FileNotFoundError, match="dvc repro cache_latents"):
        run(params, Paths(bare, cache / "models" / "autoencoder", tmp_path / "m", tmp_path / "c", tmp_path / "x.json", tmp_path / "l.csv",
                         "train_ldm"))


def test_init_from_starts_from_the_given_weights_and_refuses_another_architecture(cache, tmp_path):
    _run(cache, tmp_path / "base")
    model_dir = tmp_path / "models"  # a MODEL_DIR as `ldm import` or `ldm pull` leaves it
    shutil.copytree(cache / "models" / "autoencoder", model_dir / "autoencoder")
    shutil.copytree(tmp_path / "base" / "model", model_dir / "ldm")
    start = load_ldm(model_dir / "ldm").model
    tuned = _run(cache, tmp_path / "tuned", **{**SHORT, "steps": 1, "val_every": 1}, init_from=str(model_dir))
    assert tuned["lineage"]["inputs_sha256"]["init_from"]

    def distance(state: dict) -> float:
        return sum(float((state[k] - v).abs().sum()) for k, v in start.state_dict().items())
    fresh = type(start)(start.config).state_dict()  # where a run without init_from starts
    assert distance(load_ldm(tmp_path / "tuned" / "model").model.state_dict()) < 0.1 * distance(fresh)
    with pytest.raises(InvalidInput, match=r"train_sr.init_from .*differs from the preset's in unet.in_channels"):
        _run(cache, tmp_path / "sr", "train_sr", **SHORT, init_from=str(model_dir / "ldm"))
