"""LDM training as a Lightning module (Eq. 2/3: L_LDM on latents): no I/O, no params reading.

Batches are dicts: "z" [N x C x h x w] latents already multiplied by the scale factor, and
by conditioning kind "label" [N] long, "caption" list[str] (tokenised here with the given
tokenizer), "layout" list[str] (each a Layout's JSON, tokenised here by the model's own box tokenizer), the concat
keys (e.g. "lr" [N x 3 x H x W] in [-1, 1]) or "label_map" [N x H x W] long. Each sample's
timestep, noise and condition dropout come from its own torch.Generator, seeded from
(seed, global step, batches drawn before, the sample's place in the global batch): runs repeat
exactly, and R ranks of batch N draw what one process of batch R x N draws (rank r's
samples are places r N .. r N + N - 1), so the world size changes the maths only
through the order of floating-point sums.
Gradient clipping is the Trainer's (`gradient_clip_val=TrainConfig.grad_clip`).
On the CPU, denormal floats are flushed to zero while fitting (TrainConfig.flush_denormal).
"""

from __future__ import annotations

import copy
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor

from ldm.conditioning.config import LABEL_MAP_KEY
from ldm.conditioning.guidance import drop_class_labels, drop_prompts
from ldm.conditioning.layout import LayoutTokenizer
from ldm.conditioning.tokenizer import tokenize
from ldm.data.loader import DRAWN
from ldm.diffusion.losses import diffusion_loss
from ldm.diffusion.noise import Generators, randint, randn, seeded_generators
from ldm.latent_diffusion.model import Condition, LatentDiffusionModel
from ldm.latent_diffusion.train_config import TrainConfig
from ldm.trainer import BadSteps, log_grad_norm, lr_factor

_MIX = 1_000_003  # a prime, to mix seed parts into one 63-bit seed


def ema_decay_at(n: int, max_decay: float) -> float:
    """EMA decay for the n-th update (n >= 1): min(max_decay, (1 + n) / (10 + n)), as the reference."""
    return min(max_decay, (1 + n) / (10 + n))


class LDMTrainingModule(pl.LightningModule):
    """Trains a LatentDiffusionModel with L_simple; keeps an EMA copy in `ema` (what gets published)."""

    def __init__(self, model: LatentDiffusionModel, config: TrainConfig, tokenizer: Any = None, batch_size: int = 1):
        """`batch_size`: samples per batch on one device, for the scale_lr rule (TrainConfig.effective_lr)."""
        super().__init__()
        self.model = model
        self.config = config
        self.batch_size = batch_size
        self.tokenizer = tokenizer
        cond = model.config.conditioning
        if cond.kind == "text":
            if tokenizer is None:
                raise ValueError("a text-conditioned model needs the tokenizer it was built for")
            if len(tokenizer) > cond.vocab_size:
                raise ValueError(f"tokenizer has {len(tokenizer)} tokens but conditioning.vocab_size is"
                                 f" {cond.vocab_size}; raise vocab_size or train a smaller vocabulary")
        # layout: the boxes' tokenizer follows from the model's config, nothing to pass or save beside it
        self.layout_tokenizer = LayoutTokenizer(cond.layout_tokenizer()) if cond.kind == "layout" else None
        if config.p_uncond > 0 and cond.kind not in ("class", "text"):
            raise ValueError(f"train.p_uncond needs class or text conditioning, not {cond.kind!r}")
        # Left in train mode like the model: Lightning switches both for validation.
        self.ema = copy.deepcopy(model).requires_grad_(False) if config.ema_decay > 0 else None
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))
        self.register_buffer(DRAWN, torch.zeros((), dtype=torch.long))  # batches given to training_step
        self._skipped = False  # whether this step's loss was NaN/inf (then no update, no EMA step)
        self.bad_steps = BadSteps(config.max_bad_steps, "diffusion")

    # -- randomness ---------------------------------------------------------

    @staticmethod
    def _generators(parts: tuple[int, ...], first: int, n: int, device: torch.device) -> list[torch.Generator]:
        """Generators of places first .. first + n - 1, seeded from `parts` and the place."""
        seed = 0
        for part in parts:
            seed = (seed * _MIX + part) % (2**63 - 1)
        return seeded_generators(((seed * _MIX + first + i) % (2**63 - 1) for i in range(n)), device)

    def sample_generators(self, drawn: int, n: int, device: torch.device) -> list[torch.Generator]:
        """One generator per sample of this rank's training batch of n, seeded from (seed, global step, batches
        drawn before it, place in the global batch): no global RNG involved."""
        return self._generators((self.config.seed, self.global_step, drawn), self.global_rank * n, n, device)

    def val_generators(self, batch_idx: int, n: int, device: torch.device) -> list[torch.Generator]:
        """One generator per validation sample, seeded from (seed, place in the val set): the same timesteps
        and noise at every validation, whatever the batch size or world size, so curves and runs compare."""
        return self._generators((self.config.seed, -1), batch_idx * self.batch_size, n, device)

    # -- conditioning -------------------------------------------------------

    def condition(self, batch: dict[str, Any], generator: Generators | None) -> Condition:
        """The model condition from a batch; with a generator, dropped with probability p_uncond."""
        cond = self.model.config.conditioning
        z = batch["z"]
        p = self.config.p_uncond if generator is not None else 0.0
        if cond.kind == "none":
            return None
        if cond.kind == "class":
            labels = batch["label"].to(z.device, torch.long)
            if p > 0:
                labels = drop_class_labels(labels, p, cond.n_classes, generator)
            return labels
        if cond.kind == "text":
            prompts = list(batch["caption"])
            if p > 0:
                prompts = drop_prompts(prompts, p, generator)
            return tokenize(self.tokenizer, prompts, cond.max_seq_len).to(z.device)
        if cond.kind == "semantic":
            return batch[LABEL_MAP_KEY].to(z.device, torch.long)
        if cond.kind == "layout":
            assert self.layout_tokenizer is not None
            return self.layout_tokenizer.encode_json(list(batch["layout"])).to(z.device)  # (N, L)
        return {key: batch[key].to(z.device, z.dtype) for key in cond.concat_keys}

    # -- loss -----------------------------------------------------------------

    def loss(self, model: LatentDiffusionModel, batch: dict[str, Any], generator: Generators, drop: bool) -> Tensor:
        """L_simple of `model` on a batch, timesteps and noise drawn from the generator(s) (Eq. 1)."""
        z = batch["z"]
        cond = self.condition(batch, generator if drop else None)
        t = randint(model.schedule.num_steps, z.shape[0], generator).to(z.device)
        eps = randn(z.shape, generator, device=z.device, dtype=z.dtype)
        return diffusion_loss(lambda xt, tt: model(xt, tt, cond), z, t, eps, model.schedule, model.diffusion)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor | None:
        # Seeded by the batches drawn before this one, not Lightning's batch_idx: a resumed run restarts that.
        generators = self.sample_generators(int(self.batches_drawn), batch["z"].shape[0], batch["z"].device)
        self.batches_drawn += 1
        loss = self.loss(self.model, batch, generators, drop=True)
        self._skipped = self.bad_steps.skip(self, {"diffusion": loss}, self.global_step)
        if self._skipped:
            return None  # Lightning skips the backward pass and the update (the step still counts)
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=batch["z"].shape[0])
        return loss

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        log_grad_norm(self, self.model.parameters())  # before the Trainer's clipping; called on skipped steps too

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        n = batch["z"].shape[0]
        self.log("val/loss", self.loss(self.model, batch, self.val_generators(batch_idx, n, batch["z"].device), drop=False),
                 batch_size=n, sync_dist=True)
        if self.ema is not None:
            self.log("val/loss_ema", self.loss(self.ema, batch, self.val_generators(batch_idx, n, batch["z"].device),
                                               drop=False), batch_size=n, sync_dist=True)

    # -- EMA --------------------------------------------------------------------

    @torch.no_grad()
    def update_ema(self) -> None:
        """One EMA step of every parameter (and a copy of every buffer) of the model."""
        assert self.ema is not None
        self.ema_updates += 1
        decay = ema_decay_at(int(self.ema_updates), self.config.ema_decay)
        for e, p in zip(self.ema.parameters(), self.model.parameters()):
            e.lerp_(p.detach(), 1.0 - decay)
        for e, b in zip(self.ema.buffers(), self.model.buffers()):
            e.copy_(b)

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """The optimizer step (its closure runs training_step), then the EMA step: before the batch-end hooks,
        so a checkpoint saved there holds both and a resumed run's EMA equals a whole run's."""
        super().optimizer_step(*args, **kwargs)
        if self.ema is not None and not self._skipped:
            self.update_ema()

    # -- optimisation -------------------------------------------------------------

    def configure_optimizers(self) -> Any:
        c = self.config
        if c.lr_decay == "cosine" and c.decay_steps < 1:
            raise ValueError("train.lr_decay 'cosine' needs decay_steps >= 1; call TrainConfig.resolved(steps) first")
        lr = c.effective_lr(self.batch_size, self.trainer.world_size if self._trainer is not None else 1)
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=lr, betas=(c.beta1, c.beta2),
                                      weight_decay=c.weight_decay)
        if not c.warmup_steps and c.lr_decay == "constant":
            return optimizer
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step, c.warmup_steps, c.decay_steps if c.lr_decay == "cosine" else 0))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def on_fit_start(self) -> None:
        if self.config.flush_denormal:
            torch.set_flush_denormal(True)  # process-wide CPU flag; restored in on_fit_end

    def on_fit_end(self) -> None:
        if self.config.flush_denormal:
            torch.set_flush_denormal(False)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["ldm_config"] = self.model.config.to_dict()
        checkpoint["train_config"] = self.config.to_dict()
