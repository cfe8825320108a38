"""The layout-to-image model (Sec. 4.3.1, D.2.1): box tokens through the text transformer, cross-attended by the
UNet; the presets' paper sizes (Tab. 15) and recipes."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ldm.conditioning import ConditioningConfig, LayoutTokenizer, TextTransformer, build_conditioner
from ldm.data.layouts import Box, Layout
from ldm.latent_diffusion import LatentDiffusionModel, LDMConfig, build_ldm, preset_config
from ldm.latent_diffusion.recipes import recipe
from ldm.latent_diffusion.train_config import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")

# Tab. 15, model sizes as printed, and the batch and (effective) learning rate on one device.
PAPER = {"layout-openimages-ldm4": (306e6, 24, 4.8e-5), "layout-coco-ldm8": (345e6, 48, 4.8e-5)}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_layout_presets_match_the_paper_sizes_and_recipes(name):
    with torch.device("meta"):
        model = build_ldm(name)
    size, batch, lr = PAPER[name]
    ours = model.paper_parameter_count()
    assert abs(ours - size) / size < 0.01, f"{name}: {ours:,} vs {size:,.0f}"
    c = model.config.conditioning
    assert (c.kind, c.max_seq_len, c.depth, c.dim) == ("layout", 92, 16, 512)  # Tab. 17
    assert 8000 < c.vocab_size <= 8192 and model.config.unet.context_dim == 512
    assert (model.config.diffusion.linear_start, model.config.diffusion.linear_end) == (0.0015, 0.0205)
    r = recipe(name)
    assert r.batch_size == batch and TrainConfig(**r.train).effective_lr(r.batch_size, 1) == pytest.approx(lr)


def test_preset_details_follow_the_tables():
    oi, coco = preset_config("layout-openimages-ldm4"), preset_config("layout-coco-ldm8")
    assert oi.latent_shape == (3, 64, 64) and oi.first_stage == "vq-f4-noattn" and oi.unet.transformer_depth == 3
    assert oi.unet.channel_mult == (1, 2, 3, 4) and oi.unet.attention_resolutions == (2, 4, 8)
    assert coco.latent_shape == (4, 32, 32) and coco.first_stage == "vq-f8" and coco.unet.dropout == 0.1
    assert coco.unet.model_channels == 192 and coco.unet.transformer_depth == 2
    tiny = preset_config("tiny-layout")
    assert tiny.conditioning.layout_tokenizer().seq_len == tiny.conditioning.max_seq_len == 50


def test_layout_conditioning_takes_its_sizes_from_the_tokenizer():
    c = ConditioningConfig(kind="layout", n_classes=5, grid=16, max_boxes=4, dim=64, depth=1, heads=2, dim_head=32)
    tokenizer = LayoutTokenizer(c.layout_tokenizer())
    assert (c.vocab_size, c.max_seq_len) == (tokenizer.vocab_size, tokenizer.seq_len) == (16 * 16 + 5 + 1, 14)
    assert ConditioningConfig.from_dict(c.to_dict()) == c and c.context_dim == 64
    assert isinstance(build_conditioner(c), TextTransformer)  # the text transformer, not a copy of it
    assert dataclasses.replace(c, n_classes=7).vocab_size == 16 * 16 + 7 + 1
    with pytest.raises(ValueError, match="n_classes must be >= 1 for kind 'layout'"):
        ConditioningConfig(kind="layout")
    with pytest.raises(ValueError, match="grid must be an integer >= 2"):
        ConditioningConfig(kind="layout", n_classes=3, grid=1)
    unet = dataclasses.replace(preset_config("tiny-layout").unet, attention="self", context_dim=0)
    with pytest.raises(ValueError, match="layout conditioning is cross-attended"):
        LDMConfig(unet=unet, conditioning=c, latent_size=(16, 16))


def _randomise(module: torch.nn.Module) -> None:
    """Weights for the zero-initialised output layers too, so the output depends on every path."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)


def test_tiny_layout_model_denoises_non_square_latents_and_depends_on_the_boxes():
    torch.manual_seed(0)
    model = LatentDiffusionModel(preset_config("tiny-layout")).eval()
    _randomise(model)
    tokenizer = LayoutTokenizer(model.config.conditioning.layout_tokenizer())
    left = Layout("a", None, None, (Box(1, 0.0, 0.0, 0.5, 1.0),))
    right = Layout("b", None, None, (Box(6, 0.5, 0.2, 1.0, 0.9), Box(2, 0.1, 0.1, 0.3, 0.3)))
    tokens = tokenizer.encode_batch([left, right])  # (2, 50)
    xt, t = torch.randn(2, 3, 16, 24, generator=torch.Generator().manual_seed(1)), torch.tensor([10, 700])
    with torch.no_grad():
        out = model(xt, t, tokens)
        swapped = model(xt, t, tokens.flip(0))
        again = model(xt, t, tokens)
    assert out.shape == (2, 3, 16, 24) and torch.equal(out, again)
    assert (out - swapped).abs().max() > 1e-5  # small random weights: a small, but real, effect of the boxes
    context, concat = model.encode_condition(tokens, (16, 24))
    assert context.shape == (2, 50, 128) and concat is None
