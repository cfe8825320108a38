"""Samplers, guidance and image guiding: properties against exact denoisers (oracles) and a Gaussian toy."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ldm.conditioning import guided_denoiser
from ldm.diffusion import (
    eps_denoiser,
    eps_from_x0,
    gather,
    image_guided_denoiser,
    make_schedule,
    randn,
    sample,
    sample_ddim,
    sample_ddpm,
    sample_plms,
    sampling_timesteps,
    seeded_generators,
    v_from_x0_eps,
)
from ldm.diffusion.config import SamplerSettings

pytestmark = pytest.mark.usefixtures("one_thread")

SCHEDULE = make_schedule("linear", 1000, 0.0015, 0.0195)
SHAPE = (2, 4, 16, 24)  # non-square on purpose: a swapped height and width fails
ALL = [("ddpm", 20, 0.0), ("ddim", 10, 0.0), ("ddim", 10, 1.0), ("plms", 10, 0.0), ("dpmpp_2m", 10, 0.0)]


def x0_oracle(x0):
    """The exact eps for data that is always x0: eps = (x_t - sqrt(a) x0) / sqrt(1 - a) (Eq. 14)."""
    return lambda xt, t: eps_from_x0(SCHEDULE, xt, t, x0)


def gaussian_oracle(mu, s):
    """The exact eps* = E[eps | x_t] for x0 ~ N(mu, s^2): (x_t - sqrt(a) mu) sqrt(1 - a) / (a s^2 + 1 - a)."""
    def denoise(xt, t):
        a = gather(SCHEDULE.alpha_bar, t, xt)
        return (xt - a.sqrt() * mu) * (1 - a).sqrt() / (a * s**2 + 1 - a)
    return denoise


def conv_denoiser(channels=4):
    """A small fixed conv net: per-sample, so results cannot depend on the batch."""
    generator = torch.Generator().manual_seed(0)
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1)
    with torch.no_grad():
        conv.weight.copy_(0.1 * torch.randn(conv.weight.shape, generator=generator))
        conv.bias.copy_(0.1 * torch.randn(conv.bias.shape, generator=generator))
    return lambda xt, t: torch.tanh(conv(xt)) + 1e-3 * t.float().view(-1, 1, 1, 1)


# ---------------------------------------------------------------------------
# Timesteps
# ---------------------------------------------------------------------------

def test_uniform_spacing_never_passes_the_last_timestep():
    for steps in (3, 9, 37, 111, 333):
        ts = sampling_timesteps(1000, steps)
        assert max(ts) <= 999 and ts == sorted(set(ts))


def test_uniform_spacing_is_the_references():
    assert sampling_timesteps(1000, 50) == [t + 1 for t in range(0, 1000, 20)]
    assert len(sampling_timesteps(1000, 300)) == 333  # the reference visits ceil(1000 / 3) = 334, the last at t = 1000, past T
    assert sampling_timesteps(1000, 1000) == sampling_timesteps(1000, None) == list(range(1000))


@pytest.mark.parametrize("steps", [1, 7, 50, 200, 600, 1000])
@pytest.mark.parametrize("spacing", ["uniform", "quad"])
def test_timesteps_ascend_inside_the_schedule(steps, spacing):
    ts = sampling_timesteps(1000, steps, spacing)
    assert ts == sorted(set(ts)) and 0 <= ts[0] and ts[-1] <= 999


@pytest.mark.parametrize("steps", [0, 1001, 2.5])
def test_bad_step_counts_are_refused(steps):
    with pytest.raises(ValueError, match="steps"):
        sampling_timesteps(1000, steps)


# ---------------------------------------------------------------------------
# Oracles: exact denoisers must land on the data
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("spacing", ["uniform", "quad"])
def test_ddim_eta0_with_an_oracle_returns_x0(spacing):
    x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2))
    out = sample_ddim(x0_oracle(x0), x_T, SCHEDULE, steps=10, spacing=spacing)
    torch.testing.assert_close(out, x0, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name,steps,eta", ALL)
def test_every_sampler_with_an_oracle_returns_x0(name, steps, eta):
    x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2))
    out = sample(name, x0_oracle(x0), x_T, SCHEDULE, steps=steps, eta=eta, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(out, x0, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("parameterization", ["x0", "v"])
def test_x0_and_v_models_are_adapted_to_eps(parameterization):
    x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))

    def model(xt, t):
        eps = eps_from_x0(SCHEDULE, xt, t, x0)
        return x0 if parameterization == "x0" else v_from_x0_eps(SCHEDULE, x0, t, eps)

    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2))
    out = sample_ddim(eps_denoiser(model, SCHEDULE, parameterization), x_T, SCHEDULE, steps=10)
    torch.testing.assert_close(out, x0, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name,steps,eta", [
    ("ddpm", None, 0.0), ("ddim", 100, 0.0), ("ddim", 200, 1.0), ("plms", 20, 0.0), ("dpmpp_2m", 50, 0.0),
])
def test_samplers_recover_a_gaussian_target(name, steps, eta):
    """x0 ~ N(0.5, 0.6^2) with its exact eps: every sampler must reproduce mean and std."""
    mu, s = 0.5, 0.6
    x_T = torch.randn(4000, 1, generator=torch.Generator().manual_seed(0))
    x_T = (x_T - x_T.mean()) / x_T.std()  # moment-matched start: deterministic samplers then show only their own error
    out = sample(name, gaussian_oracle(mu, s), x_T, SCHEDULE, steps=steps, eta=eta,
                 generator=torch.Generator().manual_seed(1))
    assert abs(float(out.mean()) - mu) < 0.03  # 3 standard errors of the mean
    assert abs(float(out.std()) / s - 1) < 0.06


def test_respaced_ddpm_is_ddim_with_eta_1():
    """Ancestral sampling on a sub-chain (posterior variance) equals DDIM with eta = 1, noise for noise."""
    x_T = torch.randn(SHAPE, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    denoise = gaussian_oracle(0.3, 0.7)  # float64 throughout: the two formulas agree to rounding
    a = sample_ddpm(denoise, x_T, SCHEDULE, steps=20, generator=torch.Generator().manual_seed(5))
    b = sample_ddim(denoise, x_T, SCHEDULE, steps=20, eta=1.0, generator=torch.Generator().manual_seed(5))
    assert a.dtype == torch.float64
    torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-9)


# ---------------------------------------------------------------------------
# Contract: shapes, devices, randomness, progress
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("name,steps,eta", ALL)
def test_non_square_latents_keep_shape_and_dtype(name, steps, eta):
    x_T = torch.randn(1, 4, 16, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = sample(name, conv_denoiser(), x_T.float(), SCHEDULE, steps=steps, eta=eta,
                 generator=torch.Generator().manual_seed(1))
    assert out.shape == (1, 4, 16, 24) and out.dtype == torch.float32 and torch.isfinite(out).all()
    wide = sample(name, conv_denoiser(), torch.randn(1, 4, 24, 40, generator=torch.Generator().manual_seed(0)),
                  SCHEDULE, steps=steps, eta=eta, generator=torch.Generator().manual_seed(1))
    assert wide.shape == (1, 4, 24, 40)  # convolutional sampling (Sec. C.1): just a larger x_T


@pytest.mark.parametrize("name,steps,eta", [("ddpm", 20, 0.0), ("ddim", 10, 1.0), ("plms", 10, 0.0)])
def test_sample_i_does_not_depend_on_the_batch(name, steps, eta):
    """With one generator per sample (x_T and sampler noise), sample i alone equals sample i in a batch."""
    seeds = [11, 12, 13]
    x_T = randn((3, 4, 16, 24), seeded_generators(seeds))
    batch = sample(name, conv_denoiser(), x_T, SCHEDULE, steps=steps, eta=eta,
                   generator=seeded_generators([s + 100 for s in seeds]))
    for i, seed in enumerate(seeds):
        alone_T = randn((1, 4, 16, 24), seeded_generators([seed]))
        alone = sample(name, conv_denoiser(), alone_T, SCHEDULE, steps=steps, eta=eta,
                       generator=seeded_generators([seed + 100]))
        # float32 rounding differs between batch sizes; shared noise would differ by O(1)
        torch.testing.assert_close(alone[0], batch[i], atol=1e-4, rtol=1e-4)


def test_the_same_seed_gives_the_same_samples_and_global_rng_is_untouched():
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    denoise = conv_denoiser()
    state = torch.random.get_rng_state()
    runs = [sample_ddpm(denoise, x_T, SCHEDULE, steps=10, generator=torch.Generator().manual_seed(3))
            for _ in range(2)]
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_stochastic_samplers_refuse_the_global_rng():
    x_T = torch.zeros(SHAPE)
    with pytest.raises(ValueError, match="generator"):
        sample_ddpm(conv_denoiser(), x_T, SCHEDULE, steps=5)
    with pytest.raises(ValueError, match="generator"):
        sample_ddim(conv_denoiser(), x_T, SCHEDULE, steps=5, eta=0.5)


@pytest.mark.parametrize("name,steps,eta", ALL)
def test_callback_sees_every_step(name, steps, eta):
    seen = []
    sample(name, conv_denoiser(), torch.zeros(SHAPE), SCHEDULE, steps=steps, eta=eta,
           generator=torch.Generator().manual_seed(0), callback=lambda i, total, x: seen.append((i, total, x.shape)))
    total = len(sampling_timesteps(1000, steps))
    assert seen == [(i, total, torch.Size(SHAPE)) for i in range(total)]


def test_dispatch_refuses_unknown_names_and_misplaced_eta():
    with pytest.raises(ValueError, match="sampler must be one of"):
        sample("euler", conv_denoiser(), torch.zeros(SHAPE), SCHEDULE, steps=5)
    with pytest.raises(ValueError, match="eta is a DDIM option"):
        sample("plms", conv_denoiser(), torch.zeros(SHAPE), SCHEDULE, steps=5, eta=1.0)
    with pytest.raises(ValueError, match="needs a number of steps"):
        sample("ddim", conv_denoiser(), torch.zeros(SHAPE), SCHEDULE, steps=None)


# ---------------------------------------------------------------------------
# final_alpha: where DDIM, PLMS and DPM-Solver++(2M) end
# ---------------------------------------------------------------------------

def toy_eps(xt, t):
    """A deterministic toy denoiser, also usable by diffusers: eps = 0.1 x + sin(t / 100)."""
    t = torch.as_tensor(t)
    return 0.1 * xt + torch.sin(t.to(xt.dtype) / 100).reshape(-1, *[1] * (xt.dim() - 1))


def test_ddim_final_alpha_t0_ends_at_alpha_bar_0_and_one_stays_the_default():
    x_T = torch.randn(SHAPE, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    visited = {"one": [], "t0": []}
    states = {"one": [], "t0": []}
    outs = {}
    for mode in ("one", "t0"):
        def denoise(xt, t, mode=mode):
            visited[mode].append(int(t[0]))
            return toy_eps(xt, t)
        outs[mode] = sample_ddim(denoise, x_T, SCHEDULE, steps=10, final_alpha=mode,
                                 callback=lambda i, n, x, mode=mode: states[mode].append(x))
    ts = sampling_timesteps(1000, 10)
    assert visited["one"] == visited["t0"] == ts[::-1]
    # the last step by hand: from x at t = ts[0] to a_prev = alpha_bar[0] (the reference's alphas_prev[0])
    x, t_last = states["t0"][-2], ts[0]
    a, a_prev = float(SCHEDULE.alpha_bar[t_last]), float(SCHEDULE.alpha_bar[0])
    eps = toy_eps(x, torch.tensor([t_last]))
    x0 = (x - (1 - a) ** 0.5 * eps) / a ** 0.5
    torch.testing.assert_close(outs["t0"], a_prev ** 0.5 * x0 + (1 - a_prev) ** 0.5 * eps, rtol=1e-12, atol=1e-12)
    # the steps before the last are the same in both modes
    torch.testing.assert_close(states["one"][-2], states["t0"][-2], rtol=0, atol=0)
    # "one" is the default and returns the x0 estimate of the last step
    x, eps = states["one"][-2], toy_eps(states["one"][-2], torch.tensor([t_last]))
    torch.testing.assert_close(outs["one"], (x - (1 - a) ** 0.5 * eps) / a ** 0.5, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(sample_ddim(toy_eps, x_T, SCHEDULE, steps=10), outs["one"], rtol=0, atol=0)
    assert not torch.allclose(outs["one"], outs["t0"])


@pytest.mark.parametrize("name", ["ddim", "plms", "dpmpp_2m"])
@pytest.mark.parametrize("steps", [10, 20])
def test_final_alpha_t0_with_an_oracle_ends_on_the_ode_at_alpha_bar_0(name, steps):
    """Exact eps: the ODE solution is sqrt(a) x0 + sqrt(1 - a) eps_T at every step; "t0" stops at a = alpha_bar[0].

    steps=20 on a T=20 schedule visits t = 0 itself, so the last step is a no-op (alpha_bar[0] to alpha_bar[0]).
    """
    schedule = SCHEDULE if steps == 10 else make_schedule("linear", 20, 0.0015, 0.0195)
    x0 = torch.randn(SHAPE, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x_T = torch.randn(SHAPE, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    a_T = float(schedule.alpha_bar[sampling_timesteps(schedule.num_steps, steps)[-1]])
    eps_T = (x_T - a_T ** 0.5 * x0) / (1 - a_T) ** 0.5
    oracle = lambda xt, t: eps_from_x0(schedule, xt, t, x0)
    out = sample(name, oracle, x_T, schedule, steps=steps, final_alpha="t0")
    a0 = float(schedule.alpha_bar[0])
    torch.testing.assert_close(out, a0 ** 0.5 * x0 + (1 - a0) ** 0.5 * eps_T, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(sample(name, oracle, x_T, schedule, steps=steps), x0, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("final_alpha,set_alpha_to_one", [("t0", False), ("one", True)])
def test_ddim_matches_diffusers_ddim_scheduler(final_alpha, set_alpha_to_one):
    pytest.importorskip("diffusers")
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_start=0.0015, beta_end=0.0195,
                              beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=set_alpha_to_one,
                              steps_offset=1, timestep_spacing="leading", prediction_type="epsilon")
    scheduler.set_timesteps(50)
    assert scheduler.timesteps.tolist() == sampling_timesteps(1000, 50)[::-1]  # 981, 961, ..., 1
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    x = x_T.clone()
    for t in scheduler.timesteps:
        x = scheduler.step(toy_eps(x, t.view(1)), t, x, eta=0.0).prev_sample
    ours = sample_ddim(toy_eps, x_T.double(), SCHEDULE, steps=50, final_alpha=final_alpha)
    scale = float(ours.abs().max())
    err = float((ours - x.double()).abs().max())
    assert err < 1e-5 * scale, (f"final_alpha={final_alpha!r}: max |ours - diffusers| = {err:.3g} exceeds"
                                f" 1e-5 x max |sample| = {1e-5 * scale:.3g} (diffusers steps in float32)")


def test_final_alpha_is_refused_for_ddpm_and_unknown_values():
    x_T = torch.zeros(SHAPE)
    with pytest.raises(ValueError, match="applies to ddim, plms and dpmpp_2m"):
        sample("ddpm", conv_denoiser(), x_T, SCHEDULE, steps=5, final_alpha="t0", generator=torch.Generator())
    with pytest.raises(ValueError, match="final_alpha must be one of"):
        sample("ddim", conv_denoiser(), x_T, SCHEDULE, steps=5, final_alpha="zero")
    with pytest.raises(ValueError, match="final_alpha must be one of"):
        sample_plms(conv_denoiser(), x_T, SCHEDULE, steps=5, final_alpha="zero")
    with pytest.raises(ValueError, match="final_alpha"):
        SamplerSettings(final_alpha="zero")
    assert SamplerSettings().final_alpha == "one"


def test_the_cli_takes_final_alpha():
    from flows.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["sample", "-o", "x", "--final-alpha", "t0"]).final_alpha == "t0"
    assert parser.parse_args(["sample", "-o", "x"]).final_alpha == "one"
    with pytest.raises(SystemExit):
        parser.parse_args(["sample", "-o", "x", "--final-alpha", "zero"])


# ---------------------------------------------------------------------------
# Classifier-free guidance
# ---------------------------------------------------------------------------

class CountingModel:
    """eps depends on the condition: cond shifts the output; records each call's batch size."""

    def __init__(self):
        self.batches = []

    def __call__(self, xt, t, cond):
        self.batches.append(xt.shape[0])
        shift = cond["lr"].mean(dim=(1, 2, 3)) if isinstance(cond, dict) else cond.float()
        return torch.tanh(xt) + shift.view(-1, 1, 1, 1)


def test_guidance_scale_1_is_the_conditional_model_in_one_pass():
    model, x, t = CountingModel(), torch.randn(SHAPE), torch.full((2,), 500)
    cond, null = torch.tensor([3, 5]), torch.tensor([0, 0])
    torch.testing.assert_close(guided_denoiser(model, cond, null, 1.0)(x, t), model(x, t, cond))
    assert model.batches == [2, 2]


@pytest.mark.parametrize("scale", [0.0, 2.5, 7.0])
def test_guidance_combines_both_passes_in_one_batched_call(scale):
    model, x, t = CountingModel(), torch.randn(SHAPE), torch.full((2,), 500)
    cond = {"lr": torch.randn(2, 3, 8, 12)}
    null = {"lr": torch.zeros(2, 3, 8, 12)}
    out = guided_denoiser(model, cond, null, scale)(x, t)
    assert model.batches == [4]
    e_c, e_u = model(x, t, cond), model(x, t, null)
    torch.testing.assert_close(out, e_u + scale * (e_c - e_u))


# ---------------------------------------------------------------------------
# Image guiding (Appendix B)
# ---------------------------------------------------------------------------

def test_image_guiding_moves_z0_toward_the_target_by_the_closed_form():
    """Data N(0, 1), identity decoder: z0 = sqrt(a) z_t, so z0' = z0 + weight (1 - a) (y - z0), toward y (Alg. 2's sign)."""
    y, t, weight = torch.ones(SHAPE), torch.full((2,), 100), 0.3
    xt = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    guided = image_guided_denoiser(gaussian_oracle(0.0, 1.0), lambda z: z, y, SCHEDULE, weight)
    a = SCHEDULE.alpha_bar[100].float()
    z0, z0_guided = ((xt - (1 - a).sqrt() * eps) / a.sqrt() for eps in (gaussian_oracle(0.0, 1.0)(xt, t), guided(xt, t)))
    torch.testing.assert_close(z0_guided, z0 + weight * (1 - a) * (y - z0), atol=1e-5, rtol=1e-4)


def test_image_guided_sampling_ends_closer_to_the_target():
    """A 2x upsampling 'decoder' and a 2x pooled target at 32x48 pixels: guided samples land nearer."""
    decode = lambda z: F.interpolate(z, scale_factor=2, mode="nearest")  # noqa: E731
    down = lambda x: F.avg_pool2d(x, 2)  # noqa: E731  T: a downsampling, as in Fig. 12
    y = torch.full((2, 4, 16, 24), 0.8)
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    base = gaussian_oracle(0.0, 1.0)
    plain = sample_ddim(base, x_T, SCHEDULE, steps=20)
    guided = sample_ddim(image_guided_denoiser(base, decode, y, SCHEDULE, 0.5, transform=down), x_T, SCHEDULE, steps=20)
    assert guided.shape == SHAPE
    assert float((guided - y).pow(2).mean()) < 0.5 * float((plain - y).pow(2).mean())
