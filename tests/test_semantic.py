"""Semantic synthesis (Sec. 4.3.2): the label map through the spatial rescaler, the paper's size, training on the
cached latents and their maps, `ldm sample --map` at twice the training size, and stage evaluate_semantic."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from flows.cli import main as ldm
from ldm.autoencoder.presets import preset_config as autoencoder_config
from ldm.errors import InvalidInput
from ldm.latent_diffusion import build_ldm, load_ldm, preset_config
from ldm.latent_diffusion.settings import paired_config
from stages import cache_latents, download, evaluate_semantic, label_maps, train_ldm
from stages.params import parse_params

pytestmark = pytest.mark.usefixtures("one_thread")
RESOLUTION = 32  # latents 8x8 through kl-f4-tiny
DATA = {"resolution": RESOLUTION, "shard_size": 12}
SHORT = {"steps": 3, "batch_size": 4, "val_every": 3, "checkpoint_every": 3, "threads": 1, "shuffle_buffer": 8}


@pytest.fixture(autouse=True, scope="module")
def _quiet():
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)


def test_semantic_ldm4_has_the_papers_size_and_the_references_rescaler():
    model = build_ldm("semantic-ldm4")
    assert abs(model.paper_parameter_count() - 215.2e6) / 215.2e6 < 0.01  # Tab. 15: 215M
    assert model.config.unet.in_channels == 6 and model.config.first_stage == "vq-f4-noattn"
    assert model.config.diffusion.loss_type == "l1" and model.config.diffusion.linear_end == 0.0205
    rescaler = {k: v.numel() for k, v in model.state_dict().items() if k.startswith("cond_model.")}
    assert rescaler == {"cond_model.channel_mapper.weight": 546}  # 182 classes x 3 channels, as the reference


def test_the_rescaler_follows_the_first_stages_factor_and_refuses_maps_of_another_size():
    fitted = paired_config(preset_config("tiny-semantic"), "kl-f8-tiny", autoencoder_config("kl-f8-tiny"), 64)
    assert fitted.conditioning.rescaler_stages == 3 and fitted.latent_size == (8, 8)
    model = build_ldm(preset_config("tiny-semantic"))
    out = model(torch.randn(2, 3, 16, 24), torch.tensor([1, 500]), torch.randint(-1, 8, (2, 64, 96)))
    assert out.shape == (2, 3, 16, 24)
    with pytest.raises(ValueError, match="a map is 4 times the latent's size"):
        model(torch.randn(1, 3, 16, 16), torch.tensor([1]), torch.zeros(1, 32, 32, dtype=torch.long))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, save_autoencoder) -> Path:
    """Embedded crops -> stand-in label maps -> an untrained kl-f4-tiny -> latents with their maps."""
    out = tmp_path_factory.mktemp("semantic")
    download.run(parse_params({"data": DATA, "download": {"embedded": {"train_crops": 24, "val_crops": 8}}}),
                 download.Paths(out / "images", out / "download.json", out / "cache"))
    label_maps.run(parse_params({"label_maps": {"workers": 1, "grid_images": 2}}),
                   label_maps.Paths(out / "images", out / "label_maps", out / "label_maps.json", out / "label_maps.png"))
    save_autoencoder(out / "models" / "autoencoder", "kl-f4-tiny")
    for name, with_maps in (("latents", True), ("latents_without_maps", False)):
        params = parse_params({"data": DATA, "cache_latents": {"accelerator": "cpu", "devices": 1, "threads": 1,
                                                                "pairs": False, "masks": False, "label_maps": with_maps}})
        cache_latents.run(params, cache_latents.Paths(out / "images", out / "pairs", out / "models" / "autoencoder",
                                                      out / name, out / f"{name}.json",
                                                      label_maps=out / "label_maps"))
    return out


def _train(inputs: Path, out: Path, latents: str = "latents", **overrides) -> dict:
    params = parse_params({"data": DATA, "train_semantic": {**SHORT, **overrides}})
    return train_ldm.run(params, train_ldm.Paths(inputs / latents, inputs / "models" / "autoencoder", out / "model",
                                                 out / "ckpt", out / "metrics.json", out / "loss.csv", "train_semantic"))


@pytest.fixture(scope="module")
def models(inputs, tmp_path_factory) -> Path:
    """A models/ folder: the autoencoder beside the tiny semantic model trained a few steps."""
    out = tmp_path_factory.mktemp("semantic-train")
    metrics = _train(inputs, out)
    assert metrics["train"]["batches"] == 3 and metrics["preset"] == "tiny-semantic"
    shutil.copytree(inputs / "models" / "autoencoder", out / "models" / "autoencoder")
    shutil.copytree(out / "model", out / "models" / "ldm_semantic")
    return out / "models"


def test_a_few_training_steps_save_a_semantic_model_with_its_maps_format(models):
    loaded = load_ldm(models / "ldm_semantic")
    assert loaded.model.config.conditioning.kind == "semantic" and loaded.model.config.latent_size == (8, 8)
    assert loaded.card.label_format.name == "stand-in" and loaded.card.label_format.n_classes == 8
    assert loaded.model.cond_model.channel_mapper.weight.shape == (3, 8, 1, 1)


def test_training_without_label_maps_names_the_cache_setting(inputs, tmp_path):
    with pytest.raises(InvalidInput, match="set cache_latents.label_maps: true"):
        _train(inputs, tmp_path, latents="latents_without_maps")


def test_sample_map_at_twice_the_training_size(models, tmp_path, capsys):
    label_map = np.repeat(np.arange(8, dtype=np.uint8), 8)[None, :].repeat(2 * RESOLUTION, axis=0)  # 64 x 64 stripes
    Image.fromarray(label_map[:, :48]).save(tmp_path / "map.png")  # 64 x 48: 2x the height, 1.5x the width
    out = tmp_path / "samples"
    assert ldm(["sample", "--models", str(models), "--map", str(tmp_path / "map.png"), "--size", "64x64", "-n", "2",
                "--steps", "2", "-o", str(out)]) == 0
    assert Image.open(out / "000000.png").size == (64, 64) and Image.open(out / "000001.png").size == (64, 64)
    settings = json.loads((out / "settings.json").read_text())
    assert settings["size"] == [64, 64] and settings["latent_size"] == [16, 16] and settings["trained_size"] == [32, 32]
    assert settings["scale_factor"] == load_ldm(models / "ldm_semantic").scale_factor
    assert ldm(["sample", "--models", str(models), "--map", str(tmp_path / "map.png"), "-n", "1", "--steps", "2",
                "-o", str(tmp_path / "own")]) == 0
    assert Image.open(tmp_path / "own" / "000000.png").size == (48, 64)  # the map's own size (W x H)
    capsys.readouterr()
    Image.fromarray(np.full((64, 64), 9, dtype=np.uint8)).save(tmp_path / "bad.png")
    assert ldm(["sample", "--models", str(models), "--map", str(tmp_path / "bad.png"), "-o", str(tmp_path / "x")]) == 2
    assert "values [9] are out of range; allowed are 0..7 or 255" in capsys.readouterr().err
    assert ldm(["sample", "--models", str(models), "--map", str(tmp_path / "map.png"), "--size", "36x36",
                "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "36x36: height and width must be multiples of 8 px" in err and len(err.strip().splitlines()) == 1


def test_evaluate_semantic_writes_its_picture_and_metrics(inputs, models, tmp_path):
    params = parse_params({"evaluate_semantic": {"maps": 2, "sampling": {"steps": 2}, "threads": 1}})
    report = evaluate_semantic.run(params, evaluate_semantic.Paths(models, inputs / "images", inputs / "label_maps",
                                                                   tmp_path / "metrics.json", tmp_path / "grids"))
    assert report["sizes"] == {"1x": {"size": [32, 32], "latent_size": [8, 8]},
                               "2x": {"size": [64, 64], "latent_size": [16, 16]}}
    assert report["seeds"] == [0, 1] and report["label_maps"].startswith("stand-in")
    assert report["latent_rescaling"]["scale_factor"] == load_ldm(models / "ldm_semantic").scale_factor
    picture = Image.open(tmp_path / "grids" / "semantic.png")
    assert picture.width > 4 * 64 and picture.height > 2 * 64
    assert json.loads((tmp_path / "metrics.json").read_text())["lineage"]["inputs_sha256"]["ldm_semantic"]


def test_params_refuse_a_model_with_fewer_classes_than_the_maps():
    from stages.params import ParamsError

    with pytest.raises(ParamsError, match="label maps hold 12 classes .* set train_semantic.n_classes: 12"):
        parse_params({"label_maps": {"n_regions": 12}})
    assert parse_params({"label_maps": {"n_regions": 12}, "train_semantic": {"n_classes": 12},
                         "train_layout": {"n_classes": 12}}).ldm_config(
        "train_semantic").conditioning.n_classes == 12
