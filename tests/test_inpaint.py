"""Inpainting (Sec. 4.5, D.2.2): the latent mask, the presets' sizes (Tab. 15) and `inpaint_images` on untrained tiny
models (kl-f4-tiny at 16x24 px, so a swapped height and width fails)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ldm.autoencoder import build_autoencoder
from ldm.diffusion.config import SamplerSettings
from ldm.errors import InvalidInput
from ldm.latent_diffusion import LatentDiffusionModel, LDMCard, build_ldm, preset_config
from ldm.latent_diffusion.checkpoint import LoadedLDM
from ldm.latent_diffusion.inpaint import check_inpaint_model, inpaint_condition, inpaint_images
from ldm.masks import latent_mask

pytestmark = pytest.mark.usefixtures("one_thread")

# Tab. 15 "inpainting": 215M. The released big model has no count in the paper: 387,245,827 is its UNet built from
# the reference's models/ldm/inpainting_big/config.yaml (in 7, out 3, 256 channels, multipliers 1,2,3,4, 2 res blocks,
# attention at factors 8,4,2 with 8 heads, res-block up/down sampling) by our UNet, whose tensors map one to one onto
# the reference UNetModel's keys (tests/test_interchange.py, every preset) and whose counts meet the paper's for the
# same blocks (test_unet.py: lsun-churches-ldm8's res-block resampling, 294M; bsr-sr-ldm4's concat input, 169M).
COUNTS = {"inpaint-ldm4": 215e6, "inpaint-ldm4-big": 387_245_827}
FAST = SamplerSettings(sampler="ddim", steps=3, eta=1.0)


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_inpainting_presets_match_their_parameter_counts(name):
    with torch.device("meta"):
        model = build_ldm(name)
    ours = model.paper_parameter_count()
    assert abs(ours - COUNTS[name]) / COUNTS[name] < 0.01, f"{name}: {ours:,} vs {COUNTS[name]:,.0f}"


@pytest.mark.parametrize("name", ["tiny-inpaint", "inpaint-ldm4", "inpaint-ldm4-big"])
def test_inpainting_presets_concatenate_masked_image_and_mask(name):
    config = preset_config(name)
    cond = config.conditioning
    assert cond.kind == "concat" and cond.concat_keys == ("masked_image", "mask") and cond.concat_channels == (3, 1)
    assert config.unet.in_channels == 7 and config.unet.out_channels == 3
    assert (config.diffusion.linear_start, config.diffusion.linear_end, config.diffusion.loss_type) == (0.0015, 0.0205, "l1")
    if name != "tiny-inpaint":
        assert config.first_stage == "vq-f4-noattn"


def test_tiny_inpaint_runs_forward():
    model = build_ldm("tiny-inpaint")
    z = torch.randn(2, 3, 16, 16)
    cond = {"masked_image": torch.randn(2, 3, 16, 16), "mask": torch.ones(2, 1, 16, 16)}
    assert model(z, torch.tensor([1, 900]), cond).shape == (2, 3, 16, 16)
    assert model.unet(torch.randn(2, 7, 16, 16), torch.tensor([1, 900])).shape == (2, 3, 16, 16)


def test_latent_mask_is_nearest_and_keeps_layout():
    mask = np.zeros((16, 24), np.uint8)
    mask[4:8, 0:4] = 1  # one latent pixel (1, 0) at f=4
    small = latent_mask(mask, (4, 6))
    assert small.dtype == np.uint8 and small.shape == (4, 6)
    assert small.sum() == 1 and small[1, 0] == 1
    batch = torch.from_numpy(mask)[None, None].float().repeat(2, 1, 1, 1)
    out = latent_mask(batch, (4, 6))
    assert out.shape == (2, 1, 4, 6) and set(out.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(out[0, 0], torch.from_numpy(small).float())
    with pytest.raises(ValueError, match="N x 1 x H x W"):
        latent_mask(torch.zeros(2, 3, 8, 8), (2, 2))


@pytest.fixture(scope="module")
def tiny() -> tuple[LoadedLDM, torch.nn.Module]:
    torch.manual_seed(0)
    autoencoder = build_autoencoder("kl-f4-tiny").eval()
    model = LatentDiffusionModel(dataclasses.replace(preset_config("tiny-inpaint"), scale_factor=0.8)).eval()
    with torch.no_grad():  # the zero-initialised output layer would make every sample the same
        for p in model.unet.out.parameters():
            p.normal_(0, 0.05)
    return LoadedLDM(model, LDMCard(model=model.config, preset="tiny-inpaint")), autoencoder


def _inputs(n: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (n, 3, 16, 24), generator=g, dtype=torch.uint8)
    masks = torch.zeros(n, 1, 16, 24, dtype=torch.uint8)
    masks[:, :, 4:12, 8:20] = 1
    return images, masks


def test_inpaint_images_keeps_known_pixels_and_shape(tiny):
    loaded, autoencoder = tiny
    images, masks = _inputs()
    out = inpaint_images(loaded, autoencoder, images, masks, [0, 1, 2], FAST, batch_size=2, progress=False)
    assert out.shape == images.shape and out.dtype == torch.uint8
    known = masks.expand_as(images) == 0
    assert torch.equal(out[known], images[known])
    assert not torch.equal(out[~known], images[~known])  # the hole is filled, not copied


def test_inpaint_images_same_seed_same_output_whatever_the_batch(tiny):
    loaded, autoencoder = tiny
    images, masks = _inputs()
    a = inpaint_images(loaded, autoencoder, images, masks, [5, 6, 7], FAST, batch_size=3, progress=False)
    b = inpaint_images(loaded, autoencoder, images, masks, [5, 6, 7], FAST, batch_size=1, progress=False)
    c = inpaint_images(loaded, autoencoder, images, masks, [5, 9, 7], FAST, batch_size=3, progress=False)
    assert torch.equal(a, b)
    assert torch.equal(a[0], c[0]) and not torch.equal(a[1], c[1])


def test_inpaint_condition_encodes_the_masked_image(tiny):
    _, autoencoder = tiny
    images, masks = _inputs(2)
    x, m = images.float() / 127.5 - 1, masks.float()
    cond = inpaint_condition(autoencoder, x, m, 0.5)
    with torch.no_grad():
        expected = autoencoder.encode_mode(x * (1 - m)) * 0.5
    assert torch.allclose(cond["masked_image"], expected)
    assert torch.equal(cond["mask"], latent_mask(m, (4, 6)))


def test_inpaint_refuses_other_models_and_bad_inputs(tiny):
    loaded, autoencoder = tiny
    sr = LatentDiffusionModel(preset_config("tiny-sr"))
    with pytest.raises(InvalidInput, match="not an inpainting model"):
        check_inpaint_model(LoadedLDM(sr, LDMCard(model=sr.config)), "models/ldm_sr")
    images, masks = _inputs(2)
    with pytest.raises(InvalidInput, match="masks must be"):
        inpaint_images(loaded, autoencoder, images, masks[:, :, :8], [0, 1], FAST, progress=False)
    with pytest.raises(InvalidInput, match="seeds"):
        inpaint_images(loaded, autoencoder, images, masks, [0], FAST, progress=False)


def test_inpainting_model_follows_the_first_stage_channels():
    from ldm.autoencoder.presets import preset_config as autoencoder_config
    from ldm.latent_diffusion.settings import paired_config

    config = paired_config(preset_config("tiny-inpaint"), "kl-f8", autoencoder_config("kl-f8"), 128)
    assert config.conditioning.concat_channels == (4, 1) and config.unet.in_channels == 9
    assert config.latent_shape == (4, 16, 16)
