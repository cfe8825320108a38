"""Lightning training of an LDM: loss goes down, EMA lags, seeded, conditions handled (ldm.latent_diffusion.lightning_module)."""

from __future__ import annotations

import dataclasses
import logging

import pytest
import pytorch_lightning as pl
import torch

from ldm.conditioning import ConditioningConfig, train_wordpiece
from ldm.diffusion import DiffusionConfig
from ldm.latent_diffusion import LDMConfig, UNetConfig, build_ldm, preset_config
from ldm.latent_diffusion.lightning_module import LDMTrainingModule, TrainConfig, ema_decay_at


@pytest.fixture(autouse=True, scope="module")
def _quiet_one_thread():
    """Tiny tensors: one thread (2 threads on 2 shared cores measured 100x slower here); quiet Lightning."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    yield
    torch.set_num_threads(before)


def _micro(kind: str = "class") -> LDMConfig:
    """A very small model for 8x8x3 latents."""
    cross = kind in ("class", "text")
    unet = UNetConfig(in_channels=3 + (3 if kind == "concat" else 0), out_channels=3, model_channels=16,
                      channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(2,),
                      attention="cross" if cross else "self", num_head_channels=8, norm_groups=8,
                      context_dim=16 if cross else 0)
    cond = {
        "class": ConditioningConfig(kind="class", n_classes=4, embed_dim=16),
        "text": ConditioningConfig(kind="text", vocab_size=64, max_seq_len=8, dim=16, depth=1, heads=2, dim_head=8),
        "concat": ConditioningConfig(kind="concat"),
        "none": ConditioningConfig(),
    }[kind]
    return LDMConfig(unet=unet, conditioning=cond, diffusion=DiffusionConfig(), latent_size=(8, 8))


def _batch(kind: str = "class", n: int = 8) -> dict:
    g = torch.Generator().manual_seed(0)
    base = torch.randn(4, 3, 8, 8, generator=g)  # one pattern per class
    labels = torch.arange(n) % 4
    batch = {"z": base[labels] + 0.1 * torch.randn(n, 3, 8, 8, generator=g), "label": labels}
    batch["caption"] = [["a red cat", "a blue dog", "snow", ""][int(c)] for c in labels]
    batch["lr"] = torch.rand(n, 3, 4, 4, generator=g) * 2 - 1
    return batch


def _fit(module: LDMTrainingModule, batch: dict, steps: int) -> pl.Trainer:
    trainer = pl.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         gradient_clip_val=module.config.grad_clip or None)
    trainer.fit(module, torch.utils.data.DataLoader([batch] * steps, batch_size=None))
    return trainer


def _fixed_loss(module: LDMTrainingModule, model, batch: dict) -> float:
    """The loss at fixed timesteps and noise (averaged over a few draws)."""
    with torch.no_grad():
        g = torch.Generator().manual_seed(123)
        return sum(module.loss(model, batch, g, drop=False).item() for _ in range(8)) / 8


def test_a_few_steps_reduce_the_loss_and_ema_lags():
    model = build_ldm(_micro("class"))
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    module = LDMTrainingModule(model, TrainConfig(lr=3e-3, ema_decay=0.9, grad_clip=1.0))
    batch = _batch()
    before = _fixed_loss(module, module.model, batch)
    trainer = _fit(module, batch, steps=40)
    after = _fixed_loss(module, module.model, batch)
    assert after < 0.7 * before, (before, after)
    assert "train/loss" in trainer.callback_metrics
    assert int(module.ema_updates) == 40
    # EMA: differs from the raw weights and sits closer to where training started.
    raw, ema = dict(module.model.named_parameters()), dict(module.ema.named_parameters())
    assert not all(torch.equal(raw[k], ema[k]) for k in raw)
    dist_raw = sum((raw[k] - initial[k]).norm() ** 2 for k in raw).sqrt()
    dist_ema = sum((ema[k] - initial[k]).norm() ** 2 for k in raw).sqrt()
    assert 0 < dist_ema < dist_raw
    assert not any(p.requires_grad for p in module.ema.parameters())


def test_ema_decay_schedule():
    assert ema_decay_at(1, 0.9999) == pytest.approx(2 / 11)
    assert ema_decay_at(10**6, 0.9999) == 0.9999
    decays = [ema_decay_at(n, 0.9999) for n in range(1, 2000)]
    assert all(a <= b for a, b in zip(decays, decays[1:]))


def test_training_is_reproducible_from_the_seed():
    weights = []
    for seed in (7, 7, 8):
        torch.manual_seed(0)  # same initial weights; the step randomness comes from TrainConfig.seed
        module = LDMTrainingModule(build_ldm(_micro("class")),
                                   TrainConfig(lr=1e-3, ema_decay=0.0, p_uncond=0.3, seed=seed))
        _fit(module, _batch(), steps=3)
        weights.append(torch.cat([p.detach().flatten() for p in module.model.parameters()]))
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])


def test_warmup_is_linear():
    module = LDMTrainingModule(build_ldm(_micro("none")), TrainConfig(lr=1e-3, warmup_steps=10, ema_decay=0.0))
    trainer = _fit(module, _batch("none"), steps=4)
    lr = trainer.optimizers[0].param_groups[0]["lr"]
    assert lr == pytest.approx(1e-3 * 5 / 10)  # after 4 steps the scheduler sits at step 4: (4 + 1) / 10


def test_step_condition_dropout_uses_null_class_and_empty_prompt():
    module = LDMTrainingModule(build_ldm(_micro("class")), TrainConfig(p_uncond=0.5, ema_decay=0.0))
    batch = _batch(n=400)
    labels = module.condition(batch, torch.Generator().manual_seed(0))
    assert (labels == 4).float().mean().item() == pytest.approx(0.5, abs=0.1)
    assert torch.equal(module.condition(batch, None), batch["label"])  # no generator: no dropout (validation)

    captions = ["a red cat", "a blue dog", "snow"] * 20
    tok = train_wordpiece(captions, 40)
    text = LDMTrainingModule(build_ldm(_micro("text")), TrainConfig(p_uncond=0.5, ema_decay=0.0), tokenizer=tok)
    ids = text.condition(batch, torch.Generator().manual_seed(0))
    empty = (ids[:, 1] == tok.sep_token_id)  # "[CLS] [SEP] [PAD]..." is the empty prompt
    real_empty = torch.tensor([c == "" for c in batch["caption"]])
    assert ids.shape == (400, 8)
    assert (empty & ~real_empty).float().sum() / (~real_empty).float().sum() == pytest.approx(0.5, abs=0.1)


def test_text_and_sr_modules_train_a_step():
    tok = train_wordpiece(["a red cat", "a blue dog", "snow"] * 20, 40)
    for kind, kwargs in (("text", {"tokenizer": tok}), ("concat", {})):
        module = LDMTrainingModule(build_ldm(_micro(kind)), TrainConfig(ema_decay=0.99), **kwargs)
        trainer = _fit(module, _batch(kind), steps=2)
        assert torch.isfinite(trainer.callback_metrics["train/loss"])


def test_module_refuses_inconsistent_setups():
    with pytest.raises(ValueError, match="tokenizer"):
        LDMTrainingModule(build_ldm(_micro("text")), TrainConfig())
    big_vocab = train_wordpiece([f"word{i} w{i}x" for i in range(200)], 200)
    with pytest.raises(ValueError, match="vocab_size"):
        LDMTrainingModule(build_ldm(_micro("text")), TrainConfig(), tokenizer=big_vocab)
    with pytest.raises(ValueError, match="p_uncond"):
        LDMTrainingModule(build_ldm(_micro("concat")), TrainConfig(p_uncond=0.1))
    with pytest.raises(ValueError, match="train.lr"):
        TrainConfig(lr=0.0)
    assert TrainConfig.from_dict(TrainConfig(lr=2e-4).to_dict()) == TrainConfig(lr=2e-4)


def test_tiny_presets_build_with_their_latent_shapes():
    for name in ("tiny-cond", "tiny-txt", "tiny-sr", "tiny-uncond"):
        cfg = preset_config(name)
        assert cfg.latent_shape == (3, 16, 16)
        assert dataclasses.replace(cfg, latent_size=(16, 24)).latent_shape == (3, 16, 24)


def test_validation_logs_model_and_ema_loss_on_the_same_draws():
    module = LDMTrainingModule(build_ldm(_micro("class")), TrainConfig(ema_decay=0.999))
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    (metrics,) = trainer.validate(module, torch.utils.data.DataLoader([_batch()], batch_size=None), verbose=False)
    # Before any update the EMA equals the model, and both see the same timesteps and noise.
    assert metrics["val/loss"] == pytest.approx(metrics["val/loss_ema"], rel=1e-6)
    (again,) = trainer.validate(module, torch.utils.data.DataLoader([_batch()], batch_size=None), verbose=False)
    assert again["val/loss"] == metrics["val/loss"]  # fixed draws: comparable across epochs
