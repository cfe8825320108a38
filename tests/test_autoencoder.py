"""Tests of the first-stage autoencoders (ldm.autoencoder): shapes, sizes, losses, training."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from ldm.autoencoder import (
    AutoencoderConfig,
    DiagonalGaussian,
    MissingWeightsError,
    PatchDiscriminator,
    VectorQuantizer,
    adaptive_weight,
    adaptive_weight_from_norms,
    build_autoencoder,
    build_lpips,
    dead_code_fraction,
    hinge_d_loss,
    hinge_g_loss,
    preset_config,
    preset_names,
)
from ldm.latents import RunningMoments, first_batch_std
from ldm.metrics import psnr, ssim

# Parameter counts of the reference models: encoder + decoder + quant_conv +
# post_quant_conv (+ codebook for VQ), no discriminator, no LPIPS. Computed layer by
# layer from CompVis/latent-diffusion `ldm/modules/diffusionmodules/model.py`
# (Encoder/Decoder, GroupNorm affine, 1x1 q/k/v/proj attention, 1x1 nin_shortcut)
# and `ldm/models/autoencoder.py` (quant convs, codebook n_embed x embed_dim) with
# the ddconfigs of `models/first_stage_models/<name>/config.yaml` (ch 128,
# num_res_blocks 2, attn_resolutions at 256 px; vq-f4-noattn: attn_type "none").
# Cross-checks: kl-f8 is the Stable Diffusion v1 VAE (83,653,863 parameters);
# vq-f4 and vq-f8 are the paper's 55M and 68M (Tab. 18).
REFERENCE_PARAMS = {
    "kl-f4": 55_312_063,
    "kl-f8": 83_653_863,
    "kl-f16": 69_610_963,
    "kl-f32": 103_880_131,
    "vq-f4": 55_322_782,
    "vq-f4-noattn": 53_219_486,
    "vq-f8": 67_717_295,
    "vq-f16": 69_593_371,
}
PAPER_SIZES = {"vq-f4": 55e6, "vq-f8": 68e6}  # Tab. 18, rounded to 1M by the paper
TINY = ["kl-f4-tiny", "vq-f4-tiny"]


def _images(n: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """Smooth deterministic images in [-1, 1]: [n x 3 x height x width]."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, max(height // 4, 1), max(width // 4, 1), generator=g)
    x = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    return x * 2 - 1


# ------------------------------------------------------------------ presets, sizes


def test_presets_cover_the_reference_zoo_and_tiny_models() -> None:
    names = preset_names()
    assert set(REFERENCE_PARAMS) | set(TINY) <= set(names)
    for name in names:
        cfg = preset_config(name)
        assert cfg.kind == name.split("-")[0]
        assert f"-f{cfg.downsample_factor}" in name


@pytest.mark.parametrize("name", sorted(REFERENCE_PARAMS))
def test_parameter_count_matches_reference(name: str) -> None:
    with torch.device("meta"):
        model = build_autoencoder(name)
    assert abs(model.num_parameters() - REFERENCE_PARAMS[name]) <= 0.01 * REFERENCE_PARAMS[name]


@pytest.mark.parametrize("name", sorted(PAPER_SIZES))
def test_parameter_count_matches_paper_table_18(name: str) -> None:
    with torch.device("meta"):
        model = build_autoencoder(name)
    assert abs(model.num_parameters() - PAPER_SIZES[name]) <= 0.01 * PAPER_SIZES[name]


def test_unknown_preset_error_lists_known_names() -> None:
    with pytest.raises(ValueError, match="unknown autoencoder preset 'kl-f5'") as info:
        build_autoencoder("kl-f5")
    for name in preset_names():
        assert name in str(info.value)


# ----------------------------------------------------------------- config loading


def test_config_round_trips_through_plain_data() -> None:
    cfg = preset_config("vq-f8")
    data = cfg.to_dict()
    assert isinstance(data["ch_mult"], list)
    assert AutoencoderConfig.from_dict(data) == cfg


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"kind": "kl", "chmult": [1, 2]}, "unknown key.*chmult"),
        ({"kind": "kl", "ch": "128"}, r"autoencoder\.ch must be an integer"),
        ({"kind": "kl", "ch_mult": [1, 2.5]}, r"autoencoder\.ch_mult must be a list of integers"),
        ({"kind": "kl", "dropout": "1e-4"}, r"autoencoder\.dropout must be a number"),
        ({"kind": "gan"}, "kind must be one of"),
        ({"kind": "vq"}, "n_embed"),
        ({"kind": "kl", "attn_levels": [3]}, "level 3 is outside 0..2"),
        ({"ch": 64}, "missing required key 'kind'"),
    ],
)
def test_config_rejects_bad_input_naming_the_key(data: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AutoencoderConfig.from_dict(data)


# ------------------------------------------------------------------------ shapes

F8_TINY = AutoencoderConfig(
    kind="kl", ch=8, ch_mult=(1, 2, 2, 2), num_res_blocks=1, attn_levels=(2, 3), z_channels=4, embed_dim=4, norm_groups=4
)


@pytest.mark.parametrize("config", [preset_config(n) for n in TINY] + [F8_TINY], ids=TINY + ["kl-f8-attn"])
def test_encode_decode_round_trip_on_non_square_input(config: AutoencoderConfig) -> None:
    torch.manual_seed(0)
    model = build_autoencoder(config).eval()
    x = _images(2, 16, 24)
    f = config.downsample_factor
    encoded = model.encode(x)
    z = encoded.mode() if isinstance(encoded, DiagonalGaussian) else encoded
    assert isinstance(encoded, DiagonalGaussian) == (config.kind == "kl")
    assert z.shape == (2, config.embed_dim, 16 // f, 24 // f)
    assert model.decode(z).shape == x.shape
    out = model(x)
    assert out.x_rec.shape == x.shape
    assert out.z.shape == z.shape
    assert out.reg_loss.ndim == 0 and torch.isfinite(out.reg_loss)


def test_vq_decode_quantizes_first() -> None:
    torch.manual_seed(0)
    model = build_autoencoder("vq-f4-tiny").eval()
    with torch.no_grad():
        z = model.encode(_images(1, 16, 24))
        codes = model.quantizer.lookup(model.quantize(z).indices)  # exact codebook rows
        assert not torch.allclose(z, codes)
        expected = model.decoder(model.post_quant_conv(codes))
        assert torch.allclose(model.decode(z), expected, atol=1e-5)


@pytest.mark.parametrize(("height", "width"), [(18, 24), (16, 26)])
def test_size_not_divisible_by_f_is_an_error_naming_both(height: int, width: int) -> None:
    model = build_autoencoder("kl-f4-tiny")
    with pytest.raises(ValueError, match=rf"{height}x{width}.*f=4"):
        model.encode(torch.zeros(1, 3, height, width))


# ----------------------------------------------------------------- quantization


def test_vq_straight_through_gradient_reaches_the_encoder() -> None:
    torch.manual_seed(0)
    model = build_autoencoder("vq-f4-tiny")
    out = model(_images(2, 16, 16))
    out.x_rec.square().mean().backward()  # reconstruction only: no codebook/commitment term
    grad = model.encoder.conv_in.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_quantizer_is_nearest_code_with_identity_gradient() -> None:
    torch.manual_seed(0)
    vq = VectorQuantizer(n_embed=16, embed_dim=3)
    z = torch.randn(2, 3, 4, 6, requires_grad=True)
    out = vq(z)
    flat = z.detach().permute(0, 2, 3, 1).reshape(-1, 3)
    expected = torch.cdist(flat, vq.embedding.weight.detach()).argmin(dim=1)
    assert torch.equal(out.indices.flatten(), expected)
    assert torch.allclose(out.z_q.detach(), vq.lookup(out.indices).detach(), atol=1e-6)  # z + (e - z)
    out.z_q.sum().backward()
    assert torch.equal(z.grad, torch.ones_like(z))
    # codebook term + beta * commitment term have the same value: (1 + beta) * mse
    mse = (z.detach() - out.z_q.detach()).square().mean()
    assert torch.allclose(out.loss, (1 + vq.beta) * mse)


def test_codebook_usage_and_perplexity() -> None:
    vq = VectorQuantizer(n_embed=8, embed_dim=2)
    with torch.no_grad():
        vq.embedding.weight.copy_(torch.arange(16.0).view(8, 2))
    # every code exactly twice -> uniform usage, perplexity |Z|, zero loss
    codes = torch.cat([vq.embedding.weight.detach()] * 2)  # (16, 2)
    z = codes.T.reshape(1, 2, 4, 4)
    out = vq(z)
    assert torch.equal(out.usage, torch.full((8,), 2))
    assert out.perplexity.item() == pytest.approx(8.0)
    assert out.loss.item() == pytest.approx(0.0)
    # all positions on one code -> perplexity 1, 7 of 8 codes dead
    one = vq(torch.zeros(1, 2, 4, 4))
    assert one.usage.sum() == 16 and one.perplexity.item() == pytest.approx(1.0)
    assert dead_code_fraction(one.usage) == pytest.approx(7 / 8)


def test_dead_code_restart_is_seeded_and_leaves_used_codes() -> None:
    def restarted(seed: int) -> tuple[torch.Tensor, int]:
        torch.manual_seed(0)
        vq = VectorQuantizer(n_embed=8, embed_dim=3)
        z = torch.randn(2, 3, 4, 4)
        usage = torch.tensor([5, 0, 3, 0, 0, 1, 2, 0])
        before = vq.embedding.weight.detach().clone()
        n = vq.restart_dead_codes(z, usage, generator=torch.Generator().manual_seed(seed))
        after = vq.embedding.weight.detach()
        assert torch.equal(after[usage > 0], before[usage > 0])
        rows = z.permute(0, 2, 3, 1).reshape(-1, 3)
        for code in after[usage == 0]:  # each restarted code now sits on an encoder output
            assert (rows - code).abs().sum(dim=1).min() == 0
        return after.clone(), n

    a, n = restarted(1)
    b, _ = restarted(1)
    c, _ = restarted(2)
    assert n == 4
    assert torch.equal(a, b) and not torch.equal(a, c)


# ---------------------------------------------------------------- KL posterior


def test_diagonal_gaussian_mode_sample_and_kl() -> None:
    mean = torch.full((2, 3, 40, 40), 1.5)
    logvar = torch.full((2, 3, 40, 40), math.log(0.25))
    q = DiagonalGaussian(torch.cat([mean, logvar], dim=1))
    assert torch.equal(q.mode(), mean)
    s1 = q.sample(torch.Generator().manual_seed(0))
    s2 = q.sample(torch.Generator().manual_seed(0))
    s3 = q.sample(torch.Generator().manual_seed(1))
    assert torch.equal(s1, s2) and not torch.equal(s1, s3)
    assert s1.mean().item() == pytest.approx(1.5, abs=0.03)  # 9600 draws: se 0.005
    assert s1.std().item() == pytest.approx(0.5, abs=0.02)
    # KL against torch.distributions, summed over C, h, w
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(mean, 0.5), torch.distributions.Normal(0.0, 1.0)
    ).sum(dim=(1, 2, 3))
    assert torch.allclose(q.kl(), ref, rtol=1e-5)
    standard = DiagonalGaussian(torch.zeros(2, 6, 4, 4))
    assert torch.equal(standard.kl(), torch.zeros(2))
    assert (DiagonalGaussian(torch.randn(4, 6, 4, 4)).kl() > 0).all()


# ----------------------------------------------------------------------- losses


def test_hinge_losses() -> None:
    big = torch.full((2, 1, 3, 3), 5.0)
    assert hinge_d_loss(big, -big).item() == 0.0  # confident and right: no loss
    zeros = torch.zeros(2, 1, 3, 3)
    assert hinge_d_loss(zeros, zeros).item() == pytest.approx(1.0)
    assert hinge_d_loss(-zeros - 1, zeros + 1).item() == pytest.approx(2.0)
    assert hinge_g_loss(big).item() == pytest.approx(-5.0)


def test_adaptive_weight_is_gradient_ratio_clamped() -> None:
    assert adaptive_weight_from_norms(torch.tensor(2.0), torch.tensor(1.0), 0.5).item() == pytest.approx(
        0.5 * 2.0 / (1.0 + 1e-4)
    )
    # vanishing adversarial gradient: the ratio is clamped at 1e4 (then times disc_weight)
    assert adaptive_weight_from_norms(torch.tensor(10.0), torch.tensor(0.0), 0.5).item() == pytest.approx(5e3)
    assert adaptive_weight_from_norms(torch.tensor(0.0), torch.tensor(1.0), 0.5).item() == 0.0
    # through autograd at a "last layer": grad nll = 3 * grad g -> ratio ~3
    w = torch.randn(4, 4, requires_grad=True)
    direction = torch.randn(4, 4)
    d_w = adaptive_weight((3 * direction * w).sum(), (direction * w).sum(), w, 0.75)
    assert d_w.item() == pytest.approx(0.75 * 3.0, rel=1e-3)
    assert not d_w.requires_grad


@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_patch_discriminator_layers_and_shape(n_layers: int) -> None:
    disc = PatchDiscriminator(n_layers=n_layers)
    convs = [m for m in disc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == n_layers + 2
    assert convs[0].out_channels == 64
    logits = disc(_images(2, 64, 96))
    # n_layers-1 stride-2 convs after the first, then two 4x4 stride-1 convs (-1 each)
    stride = 2**n_layers
    assert logits.shape == (2, 1, 64 // stride - 2, 96 // stride - 2)


def test_lpips_factory_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    assert build_lpips(0.0) is None
    with pytest.raises(MissingWeightsError, match=r"vgg16-397923af\.pth.*TORCH_HOME"):
        build_lpips(1.0)
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(MissingWeightsError, match=str(missing)):
        build_lpips(1.0, missing)
    # a torchvision-layout VGG16 state dict is loaded into lpips' slices
    rand = build_lpips(1.0, pnet_rand=True)
    state = {}
    for slice_ in (rand.net.slice1, rand.net.slice2, rand.net.slice3, rand.net.slice4, rand.net.slice5):
        for index, layer in slice_.named_children():
            if isinstance(layer, torch.nn.Conv2d):
                state[f"features.{index}.weight"] = torch.full_like(layer.weight, 0.01)
                state[f"features.{index}.bias"] = torch.zeros_like(layer.bias)
    torch.save(state, tmp_path / "vgg16.pth")
    loaded = build_lpips(1.0, tmp_path / "vgg16.pth")
    assert torch.equal(loaded.net.slice1[0].weight, state["features.0.weight"])
    assert not any(p.requires_grad for p in loaded.parameters())
    x = _images(2, 32, 48)
    assert loaded(x, x).abs().max().item() == pytest.approx(0.0, abs=1e-6)
    assert loaded(x, -x).shape == (2, 1, 1, 1)


# ----------------------------------------------------------------------- health


def test_psnr_ssim_and_latent_stats() -> None:
    x = _images(3, 32, 32)
    # constant offset 0.1 -> mse 0.01 over a data range of 2: 10 log10(4 / 0.01) dB
    assert torch.allclose(psnr(x + 0.1, x), torch.full((3,), 10 * math.log10(400.0)), atol=1e-3)
    noisy = x + 0.2 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    assert (psnr(noisy, x) < psnr(x + 0.05, x)).all()
    assert torch.allclose(ssim(x, x), torch.ones(3), atol=1e-5)
    assert (ssim(noisy, x) < 0.9).all()
    g = torch.Generator().manual_seed(0)
    mean, std = torch.tensor([0.0, 2.0, -1.0]), torch.tensor([1.0, 0.5, 3.0])
    z = mean.view(1, 3, 1, 1) + std.view(1, 3, 1, 1) * torch.randn(64, 3, 16, 16, generator=g)
    moments = RunningMoments(3)
    moments.update(z)
    assert torch.allclose(moments.mean.float(), mean, atol=0.05) and torch.allclose(moments.var.sqrt().float(), std, rtol=0.03)
    unit = torch.randn(64, 4, 8, 8, generator=g)
    assert 1 / first_batch_std(3.0 * unit) == pytest.approx(1 / 3, rel=0.02)  # the scale factor of the latent
    assert dead_code_fraction(torch.tensor([0, 3, 0, 1])) == 0.5


# ---------------------------------------------------------------------- training

pl = pytest.importorskip("pytorch_lightning")
from ldm.autoencoder.lightning_module import (  # noqa: E402
    AutoencoderModule,
    TrainConfig,
)
from ldm.trainer import NonFiniteLossError  # noqa: E402


def _fit(module: AutoencoderModule, batch: torch.Tensor, steps: int) -> None:
    """Run `steps` batches of the same images through a CPU Trainer."""
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(batch), batch_size=len(batch))
    trainer = pl.Trainer(
        max_steps=steps * (1 + (module.discriminator is not None and module.train_config.disc_start == 0)),
        max_epochs=steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, data)


def _rec_l1(module: AutoencoderModule, x: torch.Tensor) -> float:
    with torch.no_grad():
        return (module.model(x, sample_posterior=False).x_rec - x).abs().mean().item()


@pytest.mark.parametrize("name", TINY)
def test_a_few_training_steps_reduce_reconstruction_loss(name: str) -> None:
    torch.manual_seed(0)
    x = _images(4, 16, 16)
    train = TrainConfig(lr=2e-3, perceptual_weight=0.0, disc_weight=0.0, grad_clip=1.0)
    module = AutoencoderModule(preset_config(name), train)
    before = _rec_l1(module, x)
    _fit(module, x, steps=25)
    assert int(module.ae_step) == 25
    assert _rec_l1(module, x) < 0.8 * before


def test_gan_lpips_and_ema_path_runs_and_logs() -> None:
    torch.manual_seed(0)
    x = _images(2, 32, 32)
    train = TrainConfig(lr=1e-3, disc_start=1, disc_weight=0.5, perceptual_weight=1.0, ema_decay=0.9, grad_clip=1.0)
    module = AutoencoderModule(preset_config("kl-f4-tiny"), train, perceptual=build_lpips(1.0, pnet_rand=True))
    disc_before = [p.detach().clone() for p in module.discriminator.parameters()]
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=2)
    trainer = pl.Trainer(max_steps=5, max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, data)
    logged = trainer.callback_metrics
    for key in ("train/rec", "train/kl", "train/g", "train/d", "train/d_weight", "train/total"):
        assert key in logged and torch.isfinite(logged[key])
    # the discriminator trained only from batch disc_start on, and it did train
    assert int(module.ae_step) == 3  # 1 + 2 * 2 optimizer steps = 5 = max_steps
    assert any(not torch.equal(a, b) for a, b in zip(disc_before, module.discriminator.parameters()))
    ema, live = module.export_model(), module.model
    assert ema is not live
    assert any(not torch.equal(a, b) for a, b in zip(ema.parameters(), live.parameters()))
    # LPIPS stays out of checkpoints
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    assert not any(k.startswith("perceptual.") for k in checkpoint["state_dict"])


def test_vq_training_logs_perplexity_and_restarts_codes() -> None:
    torch.manual_seed(0)
    train = TrainConfig(lr=1e-3, perceptual_weight=0.0, disc_weight=0.0, vq_restart_every=2)
    module = AutoencoderModule(preset_config("vq-f4-tiny"), train)
    codebook = module.model.quantizer.embedding.weight.detach().clone()
    _fit(module, _images(2, 16, 16), steps=2)
    # 2 x 16 latent positions can use at most 32 of 512 codes: restart moved the rest
    moved = (module.model.quantizer.embedding.weight.detach() != codebook).any(dim=1)
    assert moved.sum() >= 512 - 32
    assert module.trainer.callback_metrics["train/restarted_codes"] >= 512 - 32
    assert 1.0 <= module.trainer.callback_metrics["train/perplexity"] <= 32.0


def test_nan_input_is_skipped_then_raises_non_finite_loss_error() -> None:
    x = _images(2, 16, 16)
    x[0, 0, 3, 3] = float("nan")
    module = AutoencoderModule(preset_config("kl-f4-tiny"), TrainConfig(perceptual_weight=0.0, disc_weight=0.0))
    weights = [p.detach().clone() for p in module.model.parameters()]
    with pytest.raises(NonFiniteLossError, match=r"autoencoder reconstruction, regularizer, total loss is NaN or inf at step 0, 4 steps in a row \(limit max_bad_steps=3\)"):
        _fit(module, x, steps=4)  # the same NaN batch 4 times: 3 skipped, the 4th stops the fit
    # the failing steps did not touch the weights
    assert all(torch.equal(a, b) for a, b in zip(weights, module.model.parameters()))


def test_perceptual_weight_without_lpips_module_is_an_error() -> None:
    with pytest.raises(ValueError, match="build_lpips"):
        AutoencoderModule(preset_config("kl-f4-tiny"), TrainConfig(perceptual_weight=1.0))


def test_train_config_is_strict() -> None:
    assert TrainConfig.from_dict({"lr": 1, "disc_start": 0}).lr == 1.0
    with pytest.raises(ValueError, match="unknown key.*learning_rate"):
        TrainConfig.from_dict({"learning_rate": 1e-4})
    with pytest.raises(ValueError, match=r"train\.lr must be a number"):
        TrainConfig.from_dict({"lr": "1e-4"})
    with pytest.raises(ValueError, match="ema_decay"):
        TrainConfig(ema_decay=1.0)
    assert dataclasses.is_dataclass(TrainConfig) and TrainConfig.__dataclass_params__.frozen
