"""The UNet denoiser, LDM presets and their paper parameter counts, model folder round trip (ldm.latent_diffusion)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from safetensors.torch import load_file

from ldm.latent_diffusion import (
    LatentDiffusionModel,
    LDMCard,
    LDMConfig,
    UNet,
    UNetConfig,
    build_ldm,
    load_ldm,
    preset_config,
    preset_names,
    save_ldm,
)

pytestmark = pytest.mark.usefixtures("one_thread")


# Model sizes as the paper states them (appendix D.1).
PAPER_COUNTS = {
    "celebahq-ldm4": 274e6,  # Tab. 12, CelebA-HQ LDM-4
    "ffhq-ldm4": 274e6,  # Tab. 12, FFHQ LDM-4
    "lsun-bedrooms-ldm4": 274e6,  # Tab. 12, LSUN-Bedrooms LDM-4
    "lsun-churches-ldm8": 294e6,  # Tab. 12, LSUN-Churches LDM-8
    "cin-ldm8": 395e6,  # Tab. 13, LDM-8 (class-conditional ImageNet)
    "txt2img-ldm8": 1.45e9,  # Tab. 15, text-to-image, with its text transformer (Tab. 17)
    "bsr-sr-ldm4": 169e6,  # Tab. 15, super-resolution, with its VQ-f4 first stage
}


def _small_unet(**kw) -> UNetConfig:
    base = dict(in_channels=3, out_channels=3, model_channels=32, channel_mult=(1, 2, 2), num_res_blocks=1,
                attention_resolutions=(2, 4), num_head_channels=16, norm_groups=8)
    base.update(kw)
    return UNetConfig(**base)


def _randomise(module: torch.nn.Module, seed: int = 0) -> None:
    """Give zero-initialised output layers weights, so outputs depend on every path."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)


@pytest.mark.parametrize("name", sorted(PAPER_COUNTS))
def test_paper_presets_match_paper_parameter_counts(name):
    with torch.device("meta"):
        model = build_ldm(name)
    ours = model.paper_parameter_count()
    assert abs(ours - PAPER_COUNTS[name]) / PAPER_COUNTS[name] < 0.01, f"{name}: {ours:,} vs {PAPER_COUNTS[name]:,.0f}"


def test_preset_details_follow_the_paper():
    cin = preset_config("cin-ldm8")
    assert cin.latent_shape == (4, 32, 32) and cin.unet.model_channels == 256  # Tab. 13 LDM-8
    assert cin.conditioning.kind == "class" and cin.conditioning.embed_dim == 512
    txt = preset_config("txt2img-ldm8")
    assert (txt.conditioning.max_seq_len, txt.conditioning.depth, txt.conditioning.dim) == (77, 32, 1280)  # Tab. 17
    assert (txt.diffusion.linear_start, txt.diffusion.linear_end) == (0.00085, 0.012)
    churches = preset_config("lsun-churches-ldm8")
    assert churches.unet.use_scale_shift_norm and churches.unet.resblock_updown
    assert churches.diffusion.loss_type == "l1" and churches.diffusion.linear_end == 0.0155
    sr = preset_config("bsr-sr-ldm4")
    assert sr.unet.in_channels == 6 and sr.unet.out_channels == 3 and sr.conditioning.kind == "concat"
    with torch.device("meta"):
        # The first stage is counted by the paper, not held by the model.
        assert build_ldm("bsr-sr-ldm4").num_parameters() < 0.7 * PAPER_COUNTS["bsr-sr-ldm4"]


def test_presets_list_and_unknown_name():
    names = preset_names()
    assert set(PAPER_COUNTS) <= set(names)
    assert {"tiny-cond", "tiny-txt", "tiny-sr"} <= set(names)
    with pytest.raises(ValueError, match="known presets"):
        preset_config("sd-v1")


@pytest.mark.parametrize("variant", [{}, {"use_scale_shift_norm": True, "resblock_updown": True},
                                     {"conv_resample": False, "num_heads": 2, "num_head_channels": -1}])
def test_unet_output_shape_on_non_square_latents(variant):
    torch.manual_seed(0)
    unet = UNet(_small_unet(out_channels=5, **variant))
    x = torch.randn(2, 3, 16, 24)
    out = unet(x, torch.tensor([3, 900]))
    assert out.shape == (2, 5, 16, 24)


def test_unet_is_spatially_consistent_on_non_square_input():
    """With symmetric kernels, a transposed input gives the transposed output only if H and W are handled alike."""
    unet = UNet(_small_unet())
    _randomise(unet)
    with torch.no_grad():
        for m in unet.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.copy_((m.weight + m.weight.transpose(-1, -2)) / 2)
    x = torch.randn(1, 3, 16, 24, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([10])
    out = unet(x, t)
    out_t = unet(x.transpose(-1, -2), t)
    assert torch.allclose(out.transpose(-1, -2), out_t, atol=1e-5)


def test_unet_rejects_latents_not_divisible_by_its_downsampling():
    unet = UNet(_small_unet())
    with pytest.raises(ValueError, match="multiples of 4"):
        unet(torch.randn(1, 3, 16, 18), torch.tensor([0]))


def test_cross_attention_uses_the_context():
    unet = UNet(_small_unet(attention="cross", context_dim=24))
    _randomise(unet)
    g = torch.Generator().manual_seed(2)
    x, t = torch.randn(2, 3, 16, 24, generator=g), torch.tensor([5, 500])
    ctx_a, ctx_b = torch.randn(2, 7, 24, generator=g), torch.randn(2, 7, 24, generator=g)
    out_a, out_b = unet(x, t, context=ctx_a), unet(x, t, context=ctx_b)
    assert out_a.shape == (2, 3, 16, 24)
    assert not torch.allclose(out_a, out_b, atol=1e-4)
    assert torch.allclose(out_a, unet(x, t, context=ctx_a))
    with pytest.raises(ValueError, match="context"):
        unet(x, t)


def test_timestep_changes_the_output():
    unet = UNet(_small_unet())
    _randomise(unet)
    x = torch.randn(1, 3, 8, 8).repeat(2, 1, 1, 1)
    out = unet(x, torch.tensor([1, 800]))
    assert not torch.allclose(out[0], out[1], atol=1e-4)


def test_new_unet_predicts_zero_from_zero_initialised_output():
    out = UNet(_small_unet())(torch.randn(2, 3, 8, 8), torch.tensor([0, 1]))
    assert torch.count_nonzero(out) == 0


def test_gradient_checkpointing_gives_the_same_gradients():
    cfg = _small_unet(attention="cross", context_dim=8)
    plain, ckpt = UNet(cfg), UNet(dataclasses.replace(cfg, use_checkpoint=True))
    _randomise(plain)
    ckpt.load_state_dict(plain.state_dict())
    x, t, ctx = torch.randn(2, 3, 8, 8), torch.tensor([1, 2]), torch.randn(2, 3, 8)
    for m in (plain, ckpt):
        m(x, t, ctx).square().sum().backward()
    for (n, a), b in zip(plain.named_parameters(), ckpt.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-5), n


def test_unet_config_validation_names_the_problem():
    with pytest.raises(ValueError, match="factor 16 is never reached"):
        _small_unet(attention_resolutions=(16,))
    with pytest.raises(ValueError, match="exactly one of num_heads"):
        _small_unet(num_heads=4)
    with pytest.raises(ValueError, match="context_dim"):
        _small_unet(attention="cross")
    with pytest.raises(ValueError, match="unet.attention"):
        _small_unet(attention="linear")
    with pytest.raises(ValueError, match="unknown key"):
        UNetConfig.from_dict({"model_channel": 32})
    assert UNetConfig.from_dict(_small_unet().to_dict()) == _small_unet()


def test_ldm_config_round_trips_through_plain_data_and_checks_channels():
    cfg = preset_config("tiny-sr")
    assert LDMConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="in_channels"):
        dataclasses.replace(cfg, unet=dataclasses.replace(cfg.unet, in_channels=3))


@pytest.mark.parametrize("name", ["tiny-cond", "tiny-sr"])
def test_model_folder_round_trip(tmp_path, name):
    model = LatentDiffusionModel(dataclasses.replace(preset_config(name), scale_factor=0.8))
    _randomise(model, seed=3)
    save_ldm(tmp_path / "model", model, LDMCard(model=model.config, preset=name))
    assert set(load_file(str(tmp_path / "model" / "model.safetensors"))) == set(model.state_dict())
    restored = load_ldm(tmp_path / "model")
    assert restored.scale_factor == 0.8 and restored.card.preset == name
    loaded = restored.model
    assert loaded.config == model.config
    sd_a, sd_b = model.state_dict(), loaded.state_dict()
    assert sd_a.keys() == sd_b.keys() and all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)
    g = torch.Generator().manual_seed(4)
    x, t = torch.randn(2, 3, 16, 16, generator=g), torch.tensor([3, 600])
    cond = torch.tensor([1, 16]) if name == "tiny-cond" else {"lr": torch.randn(2, 3, 16, 16, generator=g)}
    with torch.no_grad():
        assert torch.equal(model(x, t, cond), loaded(x, t, cond))
