"""Schedules, forward process, posterior, parameterizations and L_simple (ldm.diffusion)."""

from __future__ import annotations

import math

import pytest
import torch

from ldm.diffusion import (
    DiffusionConfig,
    diffusion_loss,
    eps_from_v,
    eps_from_x0,
    make_schedule,
    min_snr_weight,
    per_sample_loss,
    predict_eps,
    predict_x0,
    q_posterior,
    q_sample,
    training_target,
    v_from_x0_eps,
    x0_from_eps,
    x0_from_v,
)

KINDS = ["linear", "cosine", "sqrt_linear"]


def _batch(seed: int = 0, shape=(4, 3, 16, 24), dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=dtype), torch.randn(shape, generator=g, dtype=dtype)


# -- schedules ----------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_schedule_properties(kind):
    s = make_schedule(kind, 1000, 0.0015, 0.0195)
    assert s.betas.dtype == torch.float64 and s.alpha_bar.dtype == torch.float64
    assert s.betas.shape == s.alpha_bar.shape == (1000,)
    assert bool(((s.betas > 0) & (s.betas < 1)).all())
    assert bool(((s.alpha_bar > 0) & (s.alpha_bar <= 1)).all())
    assert bool((s.alpha_bar[1:] < s.alpha_bar[:-1]).all()), "alpha_bar must decrease strictly"
    assert torch.allclose(s.alpha_bar, torch.cumprod(1 - s.betas, 0))


def test_linear_schedule_is_linear_in_sqrt_beta_with_paper_values():
    s = make_schedule("linear", 1000, 0.0015, 0.0195)
    root = s.betas.sqrt()
    steps = root[1:] - root[:-1]
    assert torch.allclose(steps, steps.mean().expand_as(steps), rtol=0, atol=1e-12)
    assert s.betas[0].item() == pytest.approx(0.0015, abs=1e-15)
    assert s.betas[-1].item() == pytest.approx(0.0195, rel=1e-12)
    # REFERENCE.md check values: alpha_bar[0] = 1 - beta_0, alpha_bar[999] ~ 1.42e-4.
    assert s.alpha_bar[0].item() == pytest.approx(0.9985, abs=1e-12)
    assert s.alpha_bar[999].item() == pytest.approx(1.42e-4, rel=0.01)


def test_sqrt_linear_is_linear_in_beta_and_differs_from_linear():
    s = make_schedule("sqrt_linear", 1000, 0.0015, 0.0195)
    diffs = s.betas[1:] - s.betas[:-1]
    assert torch.allclose(diffs, diffs.mean().expand_as(diffs), atol=1e-15)
    assert not torch.allclose(s.betas, make_schedule("linear", 1000, 0.0015, 0.0195).betas)


def test_make_schedule_rejects_unknown_kind_and_bad_range():
    with pytest.raises(ValueError, match="schedule"):
        make_schedule("quadratic", 1000)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="linear_start"):
        DiffusionConfig(linear_start=0.02, linear_end=0.01)


def test_schedule_is_cpu_float64_even_under_a_device_context():
    with torch.device("meta"):
        s = make_schedule("linear", 10, 0.0015, 0.0195)
    assert s.betas.device.type == "cpu"


# -- forward process and posterior ------------------------------------------

def test_q_sample_at_t0_is_nearly_x0_and_at_T_nearly_noise():
    s = make_schedule("linear", 1000, 0.0015, 0.0195)
    x0, eps = _batch()
    n = x0.shape[0]
    x_first = q_sample(s, x0, torch.zeros(n, dtype=torch.long), eps)
    x_last = q_sample(s, x0, torch.full((n,), 999), eps)
    assert (x_first - x0).abs().max() < 0.2  # sqrt(1 - 0.9985) ~ 0.039 times |eps| <= ~5
    assert torch.allclose(x_first, math.sqrt(0.9985) * x0 + math.sqrt(0.0015) * eps)
    assert (x_last - eps).abs().max() < 0.1


def test_q_sample_marginal_variance_is_one_for_unit_variance_data():
    s = make_schedule("linear", 1000, 0.0015, 0.0195)
    x0, eps = _batch(shape=(20000, 1, 1, 1))
    t = torch.full((20000,), 500)
    assert q_sample(s, x0, t, eps).var().item() == pytest.approx(1.0, abs=0.05)


def test_q_sample_keeps_dtype_and_device():
    s = make_schedule("linear", 1000, 0.0015, 0.0195)
    x0, eps = _batch(dtype=torch.float32)
    out = q_sample(s, x0, torch.randint(0, 1000, (4,)), eps)
    assert out.dtype == torch.float32 and out.device == x0.device


def test_posterior_variance_properties():
    s = make_schedule("linear", 1000, 0.0015, 0.0195)
    var = s.posterior_variance
    assert var[0].item() == 0.0  # q(x_{-1} | x_0, x0) is a point mass at x0
    assert bool((var[1:] > 0).all()) and bool((var[1:] <= s.betas[1:]).all())
    assert torch.isfinite(s.posterior_log_variance_clipped).all()


def test_posterior_mean_at_t0_is_x0_and_is_consistent_with_forward_process():
    s = make_schedule("linear", 1000, 0.0015, 0.0195)
    x0, eps = _batch()
    t0 = torch.zeros(4, dtype=torch.long)
    mean, var = q_posterior(s, x0, q_sample(s, x0, t0, eps), t0)
    assert torch.allclose(mean, x0, atol=1e-10) and var.shape == (4, 1, 1, 1)
    # The posterior mean interpolates: it is a convex-like blend of x0 and xt with coefficients from Eq. 12.
    t = torch.tensor([10, 100, 500, 999])
    xt = q_sample(s, x0, t, eps)
    mean, _ = q_posterior(s, x0, xt, t)
    ab, ab_prev = s.alpha_bar[t], s.alpha_bar_prev[t]
    expected_x0_coef = (s.betas[t] * ab_prev.sqrt() / (1 - ab)).view(-1, 1, 1, 1)
    expected_xt_coef = ((1 - ab_prev) * (1 - s.betas[t]).sqrt() / (1 - ab)).view(-1, 1, 1, 1)
    assert torch.allclose(mean, expected_x0_coef * x0 + expected_xt_coef * xt)


# -- parameterizations --------------------------------------------------------

def test_eps_x0_v_conversions_round_trip():
    s = make_schedule("linear", 1000, 0.0015, 0.0195)
    x0, eps = _batch()
    t = torch.tensor([0, 250, 750, 999])
    xt = q_sample(s, x0, t, eps)
    v = v_from_x0_eps(s, x0, t, eps)
    assert torch.allclose(x0_from_eps(s, xt, t, eps), x0, atol=1e-8)
    assert torch.allclose(eps_from_x0(s, xt, t, x0), eps, atol=1e-8)
    assert torch.allclose(x0_from_v(s, xt, t, v), x0, atol=1e-8)
    assert torch.allclose(eps_from_v(s, xt, t, v), eps, atol=1e-8)
    for p, out in (("eps", eps), ("x0", x0), ("v", v)):
        assert torch.allclose(predict_x0(s, xt, t, out, p), x0, atol=1e-8)
        assert torch.allclose(predict_eps(s, xt, t, out, p), eps, atol=1e-8)
        assert torch.allclose(training_target(s, x0, t, eps, p), out)


# -- losses ----------------------------------------------------------------

def test_l2_and_l1_per_sample_loss():
    pred = torch.zeros(2, 1, 2, 2)
    target = torch.tensor([[1.0, -1.0, 2.0, -2.0], [0.0, 0.0, 0.0, 0.0]]).view(2, 1, 2, 2)
    assert per_sample_loss(pred, target, "l2").tolist() == [2.5, 0.0]
    assert per_sample_loss(pred, target, "l1").tolist() == [1.5, 0.0]
    with pytest.raises(ValueError, match="loss_type"):
        per_sample_loss(pred, target, "huber")  # type: ignore[arg-type]


def test_min_snr_weights():
    s = make_schedule("linear", 1000, 0.0015, 0.0195)
    t = torch.arange(0, 1000, 37)
    snr = s.snr[t].float()
    gamma = 5.0
    w_eps = min_snr_weight(s, t, gamma, "eps")
    assert torch.allclose(w_eps, torch.clamp(snr, max=gamma) / snr)
    assert bool((w_eps <= 1 + 1e-6).all())
    high, low = snr > gamma, snr < gamma
    assert high.any() and low.any()
    assert torch.allclose(w_eps[low], torch.ones_like(w_eps[low]))  # noisy steps keep full weight
    assert bool((w_eps[high] < 1).all())  # clean steps are down-weighted
    assert torch.allclose(min_snr_weight(s, t, gamma, "x0"), torch.clamp(snr, max=gamma))
    assert torch.allclose(min_snr_weight(s, t, gamma, "v"), torch.clamp(snr, max=gamma) / (snr + 1))


def test_diffusion_loss_of_an_oracle_is_zero_and_of_zero_is_one():
    s = make_schedule("linear", 1000, 0.0015, 0.0195)
    x0, eps = _batch(shape=(256, 3, 8, 8), dtype=torch.float32)
    t = torch.randint(0, 1000, (256,), generator=torch.Generator().manual_seed(1))
    for p in ("eps", "x0", "v"):
        cfg = DiffusionConfig(parameterization=p)
        oracle = training_target(s, x0, t, eps, p)
        assert diffusion_loss(lambda xt, tt: oracle, x0, t, eps, s, cfg).item() < 1e-10
    cfg = DiffusionConfig()
    zero = diffusion_loss(lambda xt, tt: torch.zeros_like(xt), x0, t, eps, s, cfg).item()
    assert zero == pytest.approx(1.0, abs=0.02)  # E ||eps||^2 / dim
    weighted = diffusion_loss(lambda xt, tt: torch.zeros_like(xt), x0, t, eps, s,
                              DiffusionConfig(min_snr_gamma=5.0)).item()
    assert weighted < zero


def test_diffusion_config_strict_loading():
    cfg = DiffusionConfig.from_dict({"loss_type": "l1", "min_snr_gamma": 5, "linear_end": 0.0155})
    assert cfg.min_snr_gamma == 5.0 and cfg.loss_type == "l1"
    assert DiffusionConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown key"):
        DiffusionConfig.from_dict({"timestep": 1000})
    with pytest.raises(ValueError, match="diffusion.parameterization"):
        DiffusionConfig.from_dict({"parameterization": "score"})
    with pytest.raises(ValueError, match="diffusion.linear_start must be a number"):
        DiffusionConfig.from_dict({"linear_start": "1e-4"})
    with pytest.raises(ValueError, match="diffusion.timesteps must be an integer"):
        DiffusionConfig.from_dict({"timesteps": 10.5})
