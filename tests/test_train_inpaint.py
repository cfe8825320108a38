"""Stage `train_inpaint` (Sec. 4.5): the inpainting model trains on the cache's masked-image latents and masks, keeps
the known pixels, and refuses a cache without them. The session cache of conftest (`ldm_inputs`): 48 train crops of
64 px through an untrained kl-f4-tiny, with the masks stage's masks."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from ldm.autoencoder.checkpoint import load_autoencoder
from ldm.data.schema import ImageSample, LatentSample, MaskSample
from ldm.data.shards import read_shards, write_shard
from ldm.diffusion.config import SamplerSettings
from ldm.errors import InvalidInput
from ldm.latent_diffusion import LatentDiffusionModel, load_ldm
from ldm.latent_diffusion.checkpoint import LoadedLDM
from ldm.latent_diffusion.inpaint import fill_holes
from stages.params import ParamsError, parse_params
from stages.train_ldm import Paths, run

DATA = {"resolution": 64, "shard_size": 40}  # as conftest.ldm_inputs
# A short version of the tiny-inpaint CPU recipe (lr 1e-3, warm-up 20, EMA 0.999): 60 batches of 16.
SHORT = {"steps": 60, "batch_size": 16, "val_every": 60, "checkpoint_every": 60, "threads": 1, "shuffle_buffer": 50}
SAMPLER = SamplerSettings(sampler="ddim", steps=20, eta=0.0)
# Mean absolute error outside the hole, [0, 255] units, of the model's decoded output D(z_0) (before the known pixels
# are put back) against the first stage's own reconstruction D(E(x)), the best a latent model reaches through this
# first stage. The fixture's first stage is untrained and mixes the whole image (GroupNorm, attention): decoding the
# masked image's own latent already lands 23.6 from D(E(x)) outside the hole. Measured after SHORT: 24.9; the same
# model untrained: 32.2. The bound sits between them.
ERROR_BOUND = 28.0


@pytest.fixture(autouse=True, scope="module")
def _quiet():
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)


def _paths(latents: Path, cache: Path, out: Path) -> Paths:
    return Paths(latents, cache / "models" / "autoencoder", out / "model", out / "ckpt", out / "metrics.json",
                 out / "loss.csv", "train_inpaint")


@pytest.fixture(scope="module")
def trained(ldm_inputs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train-inpaint")
    run(parse_params({"data": DATA, "train_inpaint": SHORT}), _paths(ldm_inputs / "latents", ldm_inputs, out))
    return out


def _val(cache: Path, n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """The first n val images [N x 3 x H x W] uint8 and their masks [N x 1 x H x W]."""
    images = [ImageSample.decode(r).image for r in read_shards([cache / "images" / "val-000000.tar"])][:n]
    masks = [MaskSample.decode(r).mask for r in read_shards([cache / "masks" / "val-000000.tar"])][:n]
    return (torch.stack([torch.from_numpy(i).permute(2, 0, 1) for i in images]),
            torch.stack([torch.from_numpy(m)[None] for m in masks]))


def _error_outside(decoded: torch.Tensor, target: torch.Tensor, masks: torch.Tensor) -> float:
    known = (masks == 0).expand_as(decoded)
    return float((decoded.float() - target.float())[known].abs().mean())


def test_inpainting_model_keeps_the_known_pixels(ldm_inputs, trained):
    config = json.loads((trained / "model" / "config.json").read_text())
    assert config["preset"] == "tiny-inpaint" and list(config["lineage"]["params"]) == ["train_inpaint"]
    assert config["model"]["conditioning"]["concat_keys"] == ["masked_image", "mask"]
    autoencoder, _ = load_autoencoder(ldm_inputs / "models" / "autoencoder")
    loaded = load_ldm(trained / "model")
    images, masks = _val(ldm_inputs)
    seeds = list(range(len(images)))
    with torch.no_grad():
        rec = ((autoencoder.decode(autoencoder.encode_mode(images.float() / 127.5 - 1)).clamp(-1, 1) + 1) * 127.5).round()
    error = _error_outside(fill_holes(loaded, autoencoder, images, masks, seeds, SAMPLER, progress=False), rec, masks)
    fresh = LoadedLDM(LatentDiffusionModel(loaded.model.config).eval(), loaded.card)
    untrained = _error_outside(fill_holes(fresh, autoencoder, images, masks, seeds, SAMPLER, progress=False), rec, masks)
    assert error < ERROR_BOUND < untrained, (error, untrained)


def test_a_cache_without_masks_names_the_setting(ldm_inputs, tmp_path, record_shards):
    bare = tmp_path / "latents"
    bare.mkdir()
    shutil.copy(ldm_inputs / "latents" / "stats.json", bare / "stats.json")
    for shard in sorted((ldm_inputs / "latents").glob("*.tar")):
        samples = [LatentSample.decode(raw) for raw in read_shards([shard])]
        write_shard(bare / shard.name, [LatentSample(s.key, s.latent, s.label, s.caption, s.meta) for s in samples])
    record_shards(bare)
    with pytest.raises(InvalidInput, match=r"set cache_latents.masks: true"):
        run(parse_params({"data": DATA, "train_inpaint": {**SHORT, "steps": 1}}), _paths(bare, ldm_inputs, tmp_path))


def test_the_section_takes_only_inpainting_models():
    with pytest.raises(ParamsError, match="train_inpaint.preset 'tiny-sr' is not an inpainting model"):
        parse_params({"train_inpaint": {"preset": "tiny-sr"}})
    with pytest.raises(ParamsError, match="train_sr.preset 'tiny-inpaint' is not a super-resolution model"):
        parse_params({"train_sr": {"preset": "tiny-inpaint"}})
    with pytest.raises(ParamsError, match="train it as train_inpaint.preset"):
        parse_params({"train_ldm": {"preset": "tiny-inpaint"}})
    params = parse_params({"train_ldm": {"seed": 7}, "train_inpaint": {"preset": "inpaint-ldm4"}})
    assert params.train_inpaint.seed == 7  # inherited from train_ldm
    assert (params.train_inpaint.batch_size, params.train_inpaint.steps) == (128, 360_000)  # Tab. 15
    assert params.train_inpaint.recipe.lr == 1.0e-6 and params.train_inpaint.recipe.scale_lr
