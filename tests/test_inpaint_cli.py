"""`ldm inpaint IMAGE --mask MASK -o OUT`: the plumbing on an untrained tiny model folder (kl-f4-tiny beside a
tiny-inpaint LDM with random weights), the picture and the samples, and the one-line errors for bad input."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from flows.cli import main as ldm
from ldm.latent_diffusion import LatentDiffusionModel, LDMCard, preset_config, save_ldm
from ldm.model_dir import AUTOENCODER, LDM_INPAINT

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = ["--steps", "3", "--sampler", "ddim", "--eta", "1.0"]


@pytest.fixture(scope="module")
def models(tmp_path_factory, save_autoencoder) -> Path:
    root = tmp_path_factory.mktemp("inpaint-cli")
    save_autoencoder(root / AUTOENCODER, "kl-f4-tiny")
    torch.manual_seed(0)
    model = LatentDiffusionModel(dataclasses.replace(preset_config("tiny-inpaint"), scale_factor=0.8))
    with torch.no_grad():  # the zero-initialised output layer would make every sample the same
        for p in model.unet.out.parameters():
            p.normal_(0, 0.05)
    save_ldm(root / LDM_INPAINT, model, LDMCard(model=model.config, preset="tiny-inpaint"))
    return root


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """A 32x48 RGB image (non-square) and its mask: a white box, the rest black."""
    folder = tmp_path_factory.mktemp("inputs")
    image = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    mask = np.zeros((32, 48), np.uint8)
    mask[8:20, 12:40] = 255
    Image.fromarray(image).save(folder / "photo.png")
    Image.fromarray(mask).save(folder / "hole.png")
    return folder / "photo.png", folder / "hole.png", image, mask > 0


def test_inpaint_writes_the_picture_and_the_samples(models, inputs, tmp_path):
    image_path, mask_path, image, hole = inputs
    out = tmp_path / "out" / "photo.png"
    args = ["inpaint", str(image_path), "--mask", str(mask_path), "-o", str(out), "--models", str(models),
            "--samples", "3", "--seed", "5", *FAST]
    assert ldm(args) == 0
    samples = [np.array(Image.open(tmp_path / "out" / f"photo-{k}.png")) for k in (1, 2, 3)]
    for sample in samples:
        assert sample.shape == image.shape and np.array_equal(sample[~hole], image[~hole])  # known pixels kept
    assert not np.array_equal(samples[0][hole], samples[1][hole])  # seeds 5, 6, 7 differ
    picture = Image.open(out)
    assert picture.width > 6 * 48 and picture.height > 32  # six titled columns: input | mask | masked | 3 samples
    again = tmp_path / "again.png"
    assert ldm([*args[:5], str(again), *args[6:]]) == 0
    assert np.array_equal(np.array(Image.open(tmp_path / "again-2.png")), samples[1])  # the same seed, the same sample


def _error(capsys, args: list[str]) -> str:
    assert ldm(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    return lines[0]


def test_bad_inputs_are_one_line_errors(models, inputs, tmp_path, capsys):
    image_path, mask_path, _, _ = inputs
    common = ["-o", str(tmp_path / "o.png"), "--models", str(models), *FAST]
    Image.fromarray(np.zeros((32, 40), np.uint8)).save(tmp_path / "small.png")
    assert "must have the image's height and width" in _error(
        capsys, ["inpaint", str(image_path), "--mask", str(tmp_path / "small.png"), *common])
    assert "no such image file" in _error(capsys, ["inpaint", str(image_path), "--mask", str(tmp_path / "none.png"), *common])
    (tmp_path / "junk.png").write_bytes(b"not a png")
    assert "--mask" in _error(capsys, ["inpaint", str(image_path), "--mask", str(tmp_path / "junk.png"), *common])
    Image.fromarray(np.zeros((32, 48), np.uint8)).save(tmp_path / "black.png")
    assert "has no hole" in _error(capsys, ["inpaint", str(image_path), "--mask", str(tmp_path / "black.png"), *common])
    odd = np.zeros((30, 48, 3), np.uint8)
    Image.fromarray(odd).save(tmp_path / "odd.png")
    Image.fromarray(np.full((30, 48), 255, np.uint8)).save(tmp_path / "odd-mask.png")
    assert "multiples of 8" in _error(capsys, ["inpaint", str(tmp_path / "odd.png"), "--mask", str(tmp_path / "odd-mask.png"), *common])
    sr = tmp_path / "sr-models"
    shutil.copytree(models / AUTOENCODER, sr / AUTOENCODER)
    other = LatentDiffusionModel(preset_config("tiny-sr"))
    save_ldm(sr / LDM_INPAINT, other, LDMCard(model=other.config, preset="tiny-sr"))
    assert "not an inpainting model" in _error(capsys, ["inpaint", str(image_path), "--mask", str(mask_path), "-o",
                                                       str(tmp_path / "o.png"), "--models", str(sr), *FAST])
    assert not (tmp_path / "o.png").exists()


def test_help_names_the_sample_files(capsys):
    with pytest.raises(SystemExit) as exit_info:
        ldm(["inpaint", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "-1.png ... -K.png" in text and "white (nonzero) = the hole" in text and "--steps" in text
