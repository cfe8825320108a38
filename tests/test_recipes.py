"""Preset recipes: a preset brings the paper's recipe, params.yaml wins over it, `ldm params show` says where
each value came from, and every research setting reaches the model and its optimizer."""

from __future__ import annotations

import re

import pytest
import torch

from flows.cli import main
from stages.params import ParamsError, parse_params

# The paper's numbers (Tab. 12-15, one device): batch size, effective learning rate, iterations. Written here
# from the tables, independently of ldm/latent_diffusion/recipes.py.
PAPER = {
    "celebahq-ldm4": (48, 9.6e-5, 410_000), "ffhq-ldm4": (42, 8.4e-5, 635_000),
    "lsun-bedrooms-ldm4": (48, 9.6e-5, 1_900_000), "lsun-churches-ldm8": (96, 5.0e-5, 500_000),
    "cin-ldm8": (64, 6.4e-5, 2_000_000), "txt2img-ldm8": (680, 1.0e-4, 390_000),
    "cin-ldm2": (9, 6.3e-5, 2_000_000), "cin-ldm4": (40, 8.0e-5, 2_000_000),
    "cin-ldm16": (112, 4.5e-5, 2_000_000), "cin-ldm32": (112, 4.5e-5, 2_000_000),
    "celeba-ldm2": (11, 1.1e-4, 500_000), "celeba-ldm4": (48, 9.6e-5, 500_000),
    "celeba-ldm8": (96, 9.6e-5, 500_000), "celeba-ldm16": (128, 1.3e-4, 500_000),
    "celeba-ldm32": (128, 1.3e-4, 500_000),
}


def _show(capsys, *sets: str, origin: bool = False) -> str:
    """`ldm params show --set ...` on the shipped params.yaml (the working directory)."""
    args = ["params", "show", *(a for s in sets for a in ("--set", s))] + (["--origin"] if origin else [])
    assert main(args) == 0
    return capsys.readouterr().out


def _section(text: str, name: str) -> str:
    return re.search(rf"^{name}:\n(.*?)(?=^\S|\Z)", text, re.S | re.M).group(1)


@pytest.mark.parametrize("preset", sorted(PAPER))
def test_a_paper_preset_brings_its_batch_and_effective_lr(preset, capsys, monkeypatch, root):
    monkeypatch.chdir(root)
    batch, lr, steps = PAPER[preset]
    text = _section(_show(capsys, f"train_ldm.preset={preset}"), "train_ldm")
    assert f"  batch_size: {batch}\n" in text and f"  steps: {steps}\n" in text
    assert f"# effective lr on one device: {lr:.3g} =" in text


def test_the_sr_preset_and_the_autoencoder_presets_bring_theirs(capsys, monkeypatch, root):
    monkeypatch.chdir(root)
    text = _show(capsys, "train_sr.preset=bsr-sr-ldm4", "autoencoder.preset=vq-f4")
    assert "  batch_size: 64\n" in _section(text, "train_sr") and "effective lr on one device: 6.4e-05" in text
    ae = parse_params({"autoencoder": {"preset": "kl-f8"}}).train_autoencoder
    assert (ae.batch_size, ae.recipe.lr, ae.recipe.scale_lr, ae.recipe.beta1) == (4, 4.5e-6, True, 0.5)
    assert (ae.recipe.perceptual_weight, ae.recipe.kl_weight, ae.recipe.disc_weight, ae.recipe.disc_start) == (
        1.0, 1.0e-6, 0.5, 50001)
    vq = parse_params({"autoencoder": {"preset": "vq-f8"}}).train_autoencoder
    assert (vq.batch_size, vq.recipe.disc_start, vq.recipe.disc_weight, vq.recipe.codebook_weight) == (10, 1, 0.6, 1.0)


def test_a_cpu_preset_keeps_the_cpu_recipe():
    params = parse_params({})
    assert (params.train_ldm.steps, params.train_ldm.batch_size, params.train_ldm.recipe.lr) == (150, 32, 1.0e-3)
    assert (params.train_autoencoder.steps, params.train_autoencoder.recipe.perceptual_weight) == (300, 0.0)


def test_params_yaml_wins_over_the_recipe_and_the_reference_rule_scales_the_lr():
    p = parse_params({"train_ldm": {"preset": "celebahq-ldm4", "batch_size": 24, "recipe": {"accumulate": 2}}}).train_ldm
    assert p.steps == 410_000 and p.recipe.lr == 2.0e-6  # still the preset's
    assert p.train_config().effective_lr(p.batch_size, devices=2) == pytest.approx(2.0e-6 * 24 * 2 * 2)


def test_show_marks_every_origin(capsys, monkeypatch, root):
    monkeypatch.chdir(root)
    text = _section(_show(capsys, "train_ldm.preset=celebahq-ldm4", "+train_ldm.recipe.warmup_steps=100",
                          origin=True), "train_ldm")
    assert re.search(r"preset: celebahq-ldm4 +# --set", text)
    assert re.search(r"batch_size: 48 +# preset celebahq-ldm4", text)
    assert re.search(r"warmup_steps: 100 +# --set", text)
    assert re.search(r"seed: 0 +# params.yaml", text) and re.search(r"weight_decay: 0.01 +# default", text)


def test_train_sr_inherits_only_the_loop_settings():
    params = parse_params({"train_ldm": {"seed": 7, "steps": 9, "recipe": {"lr": 5.0e-4}}})
    assert params.train_sr.seed == 7 and params.train_sr.steps == 150 and params.train_sr.recipe.lr == 1.0e-3


@pytest.mark.parametrize(("raw", "message"), [
    ({"train_ldm": {"preset": "tiny-uncond", "recipe": {"p_uncond": 0.1}}}, "train_ldm.recipe.p_uncond: 0.1 drops"),
    ({"train_sr": {"first_stage": "vq-f4-tiny"}}, "train_sr.first_stage: pins 'vq-f4-tiny' but the pipeline trains"),
    ({"train_ldm": {"recipe": {"p_uncond": 0.0}}}, "evaluate.sampling.guidance_scale: 2.0 needs an unconditional"),
    ({"train_ldm": {"recipe": {"decay_steps": 9}}}, "decay_steps is 9 but train.lr_decay is 'constant'"),
    ({"train_ldm": {"model": {"linear_start": 0.5, "linear_end": 0.1}}}, "train_ldm.model: diffusion: need 0 < linear_start"),
    ({"train_ldm": {"model": {"parameterization": "score"}}}, "train_ldm.model.parameterization: must be one of"),
    ({"train_sr": {"preset": "tiny-cond"}}, "train_sr.preset 'tiny-cond' is not a super-resolution model"),
])
def test_conflicts_are_refused_naming_the_key(raw, message):
    with pytest.raises(ParamsError, match=re.escape(message)):
        parse_params(raw)


def test_the_vq_switch_is_one_key():
    params = parse_params({"autoencoder": {"preset": "vq-f4-tiny"}})
    assert params.train_autoencoder.recipe.vq_restart_every == 25  # the VQ recipe's guard against collapse
    for section in ("train_ldm", "train_sr"):
        assert params.ldm_config(section).first_stage == "vq-f4-tiny"
    deeper = parse_params({"autoencoder": {"preset": "kl-f16-tiny"}}).ldm_config("train_ldm")
    assert deeper.latent_shape == (8, 4, 4) and deeper.unet.in_channels == 8


def test_research_settings_reach_the_model_and_the_optimizer():
    from ldm.latent_diffusion.lightning_module import LDMTrainingModule
    from ldm.latent_diffusion.model import LatentDiffusionModel

    model_keys = {"parameterization": "v", "schedule": "cosine", "loss_type": "l1", "min_snr_gamma": 5.0,
                  "use_checkpoint": True, "dropout": 0.1}
    params = parse_params({"train_ldm": {"steps": 100, "model": model_keys, "recipe": {
        "lr": 1.0e-5, "scale_lr": True, "accumulate": 2, "warmup_steps": 10, "lr_decay": "cosine", "ema_decay": 0.99}}})
    config = params.ldm_config("train_ldm")
    d = config.diffusion
    assert (d.parameterization, d.schedule, d.loss_type, d.min_snr_gamma) == ("v", "cosine", "l1", 5.0)
    model = LatentDiffusionModel(config)
    assert all(b.use_checkpoint for b in model.modules() if hasattr(b, "use_checkpoint"))
    assert {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)} == {0.1}
    train = params.train_ldm.train_config()
    assert train.decay_steps == 90  # cosine over the steps after the warm-up
    module = LDMTrainingModule(model, train, batch_size=params.train_ldm.batch_size)
    opt = module.configure_optimizers()
    optimizer, schedule = opt["optimizer"], opt["lr_scheduler"]["scheduler"]
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1.0e-5 * 32 * 2 / 10)  # warm-up step 1 of 10
    for _ in range(55):
        schedule.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1.0e-5 * 32 * 2 * 0.5)  # halfway down the cosine
    assert module.ema is not None
