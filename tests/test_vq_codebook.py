"""VQ codebook against collapse: l2/low-dim lookup, EMA codebook, dead-code restarts, and the health warnings."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ldm.autoencoder.config import AutoencoderConfig
from ldm.autoencoder.health import (
    DEAD_FRACTION_WARN,
    MIN_VECTORS_PER_CODE,
    PERPLEXITY_FRACTION_WARN,
    codebook_warnings,
)
from ldm.autoencoder.model import build_autoencoder
from ldm.autoencoder.presets import preset_config
from ldm.autoencoder.quantize import VectorQuantizer


def _vectors(z: torch.Tensor) -> torch.Tensor:
    """[N x D x h x w] -> [(N*h*w) x D]."""
    return z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])


# ----------------------------------------------------------------- l2, low-dim lookup


def test_l2_lookup_picks_the_most_cosine_similar_code_not_the_closest() -> None:
    vq = VectorQuantizer(n_embed=2, embed_dim=2, l2=True)
    with torch.no_grad():
        vq.embedding.weight.copy_(torch.tensor([[0.1, 0.0], [0.0, 10.0]]))
    z = torch.tensor([[1.0, 1.1], [3.0, 0.1]]).T.reshape(1, 2, 1, 2)  # two vectors on a 1x2 grid
    # Euclidean: both are closest to the short code 0; by angle the first is nearer code 1.
    assert vq(z).indices.flatten().tolist() == [1, 0]


def test_l2_low_dim_lookup_matches_cosine_argmax_on_non_square_latents() -> None:
    torch.manual_seed(0)
    vq = VectorQuantizer(n_embed=32, embed_dim=8, codebook_dim=3, l2=True)
    z = torch.randn(2, 8, 4, 6)  # h 4, w 6
    out = vq(z)
    projected = vq.proj_in(_vectors(z))  # (48, 3)
    expected = F.cosine_similarity(projected[:, None], vq.embedding.weight[None], dim=2).argmax(dim=1)
    assert out.indices.shape == (2, 4, 6)
    assert torch.equal(out.indices.flatten(), expected)
    assert out.z_q.shape == z.shape  # projected back up to the latent's channels
    assert torch.allclose(out.z_q, vq.lookup(out.indices), atol=1e-5)


def test_projection_adds_two_linear_maps_and_defaults_keep_the_reference_quantizer() -> None:
    plain = VectorQuantizer(n_embed=16, embed_dim=8)
    low = VectorQuantizer(n_embed=16, embed_dim=8, codebook_dim=4)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(plain) == 16 * 8
    assert count(low) == 16 * 4 + (8 * 4 + 4) + (4 * 8 + 8)
    default = AutoencoderConfig(kind="vq", n_embed=16)
    assert (default.codebook_dim, default.codebook_l2, default.codebook_ema) == (0, False, 0.0)


@pytest.mark.parametrize(("field", "value"), [("codebook_dim", 4), ("codebook_l2", True), ("codebook_ema", 0.99)])
def test_codebook_options_are_refused_for_kl(field: str, value: object) -> None:
    with pytest.raises(ValueError, match="VQ settings"):
        AutoencoderConfig(kind="kl", **{field: value})


def test_codebook_ema_must_be_a_decay() -> None:
    with pytest.raises(ValueError, match="codebook_ema"):
        AutoencoderConfig(kind="vq", n_embed=16, codebook_ema=1.0)


# ----------------------------------------------------------------- EMA codebook


def test_ema_codebook_moves_codes_toward_assigned_means_and_takes_no_gradient() -> None:
    vq = VectorQuantizer(n_embed=3, embed_dim=2, ema_decay=0.5)
    with torch.no_grad():
        vq.embedding.weight.copy_(torch.tensor([[0.0, 0.0], [10.0, 10.0], [-50.0, 50.0]]))
        vq.ema_sum.copy_(vq.embedding.weight)
    assert not vq.embedding.weight.requires_grad
    rows = torch.tensor([[1.0, 0.0], [3.0, 0.0], [9.0, 9.0]])  # two near code 0 (mean (2, 0)), one near code 1
    z = rows.T.reshape(1, 2, 1, 3)
    out = vq(z)
    assert out.indices.flatten().tolist() == [0, 0, 1]
    for _ in range(12):  # decay 0.5: the initial codes weigh 0.5**12 by now
        vq.update_codebook(z, out.indices)
    codes = vq.embedding.weight
    assert torch.allclose(codes[0], torch.tensor([2.0, 0.0]), atol=1e-3)
    assert torch.allclose(codes[1], torch.tensor([9.0, 9.0]), atol=1e-3)
    assert torch.allclose(codes[2], torch.tensor([-50.0, 50.0]), rtol=0.05)  # unused: stays put


def test_ema_loss_is_the_commitment_term_only() -> None:
    torch.manual_seed(0)
    vq = VectorQuantizer(n_embed=8, embed_dim=3, beta=0.25, ema_decay=0.99)
    z = torch.randn(1, 3, 2, 4)
    out = vq(z)
    assert torch.allclose(out.loss, 0.25 * (z - out.z_q.detach()).square().mean())


def test_training_step_updates_an_ema_codebook() -> None:
    import pytorch_lightning as pl

    from ldm.autoencoder.lightning_module import AutoencoderModule
    from ldm.autoencoder.train_config import TrainConfig

    torch.manual_seed(0)
    config = AutoencoderConfig(kind="vq", ch=8, ch_mult=(1, 2), num_res_blocks=1, mid_attn=False, n_embed=16,
                               norm_groups=4, codebook_dim=2, codebook_l2=True, codebook_ema=0.9)
    module = AutoencoderModule(config, TrainConfig(lr=1e-3, perceptual_weight=0.0, disc_weight=0.0))
    before = module.model.quantizer.embedding.weight.clone()
    x = torch.rand(2, 3, 8, 12) * 2 - 1
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=2)
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu")
    trainer.fit(module, loader)
    assert not torch.equal(module.model.quantizer.embedding.weight, before)


# ----------------------------------------------------------------- restarts


def test_restart_revives_dead_codes_in_the_lookup_space() -> None:
    torch.manual_seed(0)
    vq = VectorQuantizer(n_embed=8, embed_dim=6, codebook_dim=2, l2=True, ema_decay=0.99)
    z = torch.randn(2, 6, 3, 5)
    usage = torch.tensor([4, 0, 0, 1, 0, 2, 0, 0])
    alive = vq.embedding.weight[usage > 0].clone()
    assert vq.restart_dead_codes(z, usage, generator=torch.Generator().manual_seed(0)) == 5
    assert torch.equal(vq.embedding.weight[usage > 0], alive)
    lookup = F.normalize(vq.proj_in(_vectors(z)), dim=1)  # (30, 2)
    for code in vq.embedding.weight[usage == 0]:  # each sits on one projected encoder output
        assert (lookup - code).abs().sum(dim=1).min() < 1e-6
    assert torch.equal(vq.ema_sum, vq.embedding.weight) and (vq.ema_count[usage == 0] == 1).all()
    assert (vq(z).usage[usage == 0] > 0).any()  # revived codes are picked again


# ----------------------------------------------------------------- health warnings


def test_report_warns_on_collapsed_usage_and_not_on_healthy_usage() -> None:
    size = 64
    healthy = torch.full((size,), MIN_VECTORS_PER_CODE)
    assert codebook_warnings(healthy) == []
    dead = torch.zeros(size, dtype=torch.long)
    dead[: size // 2] = 4 * MIN_VECTORS_PER_CODE  # half the codes never picked
    assert DEAD_FRACTION_WARN < 0.5
    assert any("unused" in w for w in codebook_warnings(dead))
    skewed = torch.ones(size, dtype=torch.long)  # every code alive, but one takes nearly all
    skewed[0] = 100 * size
    assert PERPLEXITY_FRACTION_WARN * size > 1.2
    warnings = codebook_warnings(skewed)
    assert len(warnings) == 1 and "perplexity" in warnings[0]


def test_report_does_not_judge_usage_from_too_few_vectors() -> None:
    sparse = torch.zeros(512, dtype=torch.long)
    sparse[:10] = 5  # 50 vectors cannot show whether 512 codes are alive
    assert codebook_warnings(sparse) == []


def test_evaluate_autoencoder_reports_a_collapsed_codebook() -> None:
    from ldm.autoencoder.report import evaluate_autoencoder
    from ldm.autoencoder.train_config import TrainConfig

    config = AutoencoderConfig(kind="vq", ch=8, ch_mult=(1, 2), num_res_blocks=1, mid_attn=False, n_embed=4,
                               norm_groups=4)
    model = build_autoencoder(config).eval()
    with torch.no_grad():
        model.quantizer.embedding.weight[1:] = 1.0e3  # only code 0 is ever the nearest
    x = torch.rand(2, 3, 8, 12) * 2 - 1
    report = evaluate_autoencoder(model, [x], TrainConfig(perceptual_weight=0.0, disc_weight=0.0))
    assert report["codebook"]["dead_fraction"] == 0.75
    assert any("codebook collapse" in w for w in report["warnings"])


def test_vq_tiny_preset_uses_the_collapse_guards() -> None:
    config = preset_config("vq-f4-tiny")
    assert config.codebook_l2 or config.codebook_ema > 0
