"""Stage `evaluate_inpaint` (Tab. 7) on a random-weight tiny inpainting model: both rows, stand-ins, skipped weights,
the titled grid."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from PIL import Image

from ldm.autoencoder.presets import preset_config as autoencoder_config
from ldm.data.grids import GUTTER, TITLE_HEIGHT
from ldm.latent_diffusion.checkpoint import LDMCard, save_ldm
from ldm.latent_diffusion.model import LatentDiffusionModel
from ldm.latent_diffusion.presets import preset_config
from ldm.latent_diffusion.settings import paired_config
from ldm.model_dir import AUTOENCODER, LDM_INPAINT
from stages import download, masks
from stages.evaluate_inpaint import Paths, run
from stages.params import parse_params

pytestmark = pytest.mark.usefixtures("one_thread")

RESOLUTION = 32
DATA = {"resolution": RESOLUTION, "shard_size": 40}
TITLES = ["original", "mask", "masked", "blurred fill (baseline)", "LDM fill"]
FAST = {"samples": 6, "batch_size": 6, "grid_images": 3, "threads": 1, "sampling": {"sampler": "ddim", "steps": 3},
        "feature_extractor": "random-conv", "lpips_net": "random-vgg16"}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, save_autoencoder) -> Path:
    """32 px embedded crops with their masks, an untrained kl-f4-tiny and a random-weight tiny inpainting LDM."""
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    root = tmp_path_factory.mktemp("inpaint-eval")
    download.run(parse_params({"data": DATA, "download": {"embedded": {"train_crops": 4, "val_crops": 8}}}),
                 download.Paths(root / "images", root / "download.json", root / "cache"))
    masks.run(parse_params({"data": DATA, "masks": {"workers": 1, "grid_images": 2}}),
              masks.Paths(root / "images", root / "masks", root / "masks.json", root / "masks.png"))
    save_autoencoder(root / "models" / AUTOENCODER, "kl-f4-tiny")
    config = paired_config(preset_config("tiny-inpaint"), "kl-f4-tiny", autoencoder_config("kl-f4-tiny"), RESOLUTION)
    torch.manual_seed(0)
    model = LatentDiffusionModel(config)
    save_ldm(root / "models" / LDM_INPAINT, model, LDMCard(model=config, preset="tiny-inpaint"))
    return root


def _evaluate(inputs: Path, out: Path, **overrides) -> dict:
    params = parse_params({"data": DATA, "evaluate_inpaint": {**FAST, **overrides}})
    return run(params, Paths(inputs / "models", inputs / "images", inputs / "masks", out / "evaluate_inpaint.json",
                             out / "grids", out / "cache"))


def test_stage_scores_model_and_baseline_with_the_stand_ins(inputs, tmp_path):
    report = _evaluate(inputs, tmp_path)
    assert report["skipped"] == {} and report["samples"] == 6
    for row in ("ldm", "blur_fill"):
        assert {"fid", "lpips", "psnr", "ssim", "psnr_hole", "ssim_hole"} <= set(report[row]), row
        assert report[row]["psnr_hole"] <= report[row]["psnr"]  # the known pixels are kept: errors sit in the hole
    assert report["ldm"]["seeds"] == [0, 5] and report["ldm"]["sampling"]["steps"] == 3
    assert set(report["stand_ins"]) == {"random-conv", "random-vgg16"} and report["lpips"]["stand_in"]
    assert report["fid_reference"]["split"] == "val" and report["fid_reference"]["images"] == 8
    assert report["grid"]["columns"] == TITLES
    picture = Image.open(tmp_path / "grids" / "inpaint.png")
    tile = (picture.size[1] - TITLE_HEIGHT - GUTTER) // 3 - GUTTER  # 3 rows of square tiles
    assert tile >= len(TITLES[3]) * 7 and tile % RESOLUTION == 0  # enlarged until the longest title fits
    assert picture.size[0] > len(TITLES) * (tile + GUTTER)  # five columns and the row labels
    assert json.loads((tmp_path / "evaluate_inpaint.json").read_text()) == report
    again = _evaluate(inputs, tmp_path / "again")
    assert (tmp_path / "again" / "evaluate_inpaint.json").read_bytes() == (tmp_path / "evaluate_inpaint.json").read_bytes()
    assert (tmp_path / "again" / "grids" / "inpaint.png").read_bytes() == (tmp_path / "grids" / "inpaint.png").read_bytes()
    assert again["ldm"]["fid"] == report["ldm"]["fid"]


def test_stage_reports_missing_weights_as_skipped_and_scores_the_rest(inputs, tmp_path):
    report = _evaluate(inputs, tmp_path, feature_extractor="inception-v3-compat", lpips_net="vgg16",
                       inception_weights=str(tmp_path / "no-inception.pth"), vgg_weights=str(tmp_path / "no-vgg.pth"))
    assert "no-inception.pth" in report["skipped"]["fid"] and "no-vgg.pth" in report["skipped"]["lpips"]
    assert "evaluate_inpaint.vgg_weights" in report["skipped"]["lpips"] and report["stand_ins"] == {}
    for row in ("ldm", "blur_fill"):
        assert "fid" not in report[row] and "lpips" not in report[row] and "psnr_hole" in report[row]
    assert (tmp_path / "grids" / "inpaint.png").is_file()


def test_guidance_is_refused_for_the_concat_model():
    with pytest.raises(ValueError, match="evaluate_inpaint.sampling: guidance_scale must be 1.0"):
        parse_params({"evaluate_inpaint": {"sampling": {"guidance_scale": 2.0}}})
