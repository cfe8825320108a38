"""Adversarial autoencoder training (Eq. 25) as a Lightning module: no I/O, no params reading.

Each batch runs a generator step (E, D: L_rec + L_reg + d_w * L_adv) and, from
`disc_start` on, a discriminator step (hinge loss). `ae_step` counts batches;
note that Lightning's `global_step` counts optimizer steps, two per batch once
the discriminator trains.
"""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ldm.autoencoder.config import AutoencoderConfig
from ldm.autoencoder.discriminator import PatchDiscriminator
from ldm.autoencoder.losses import adaptive_weight, hinge_d_loss, hinge_g_loss, reconstruction_loss
from ldm.autoencoder.model import Autoencoder, AutoencoderOutput
from ldm.autoencoder.train_config import TrainConfig
from ldm.data.loader import DRAWN
from ldm.metrics.quality import psnr
from ldm.trainer import BadSteps, log_grad_norm


_MIX = 1_000_003  # a prime, to mix the seed and the batch count into one seed


class AutoencoderModule(pl.LightningModule):
    """Trains an `Autoencoder` against a PatchGAN with manual optimization (two Adams)."""

    def __init__(
        self,
        model: AutoencoderConfig | Autoencoder,
        train: TrainConfig = TrainConfig(),
        perceptual: nn.Module | None = None,
        batch_size: int = 1,
    ) -> None:
        """perceptual: a frozen LPIPS (see `build_lpips`), required when perceptual_weight > 0;
        batch_size: samples per batch on one device, for the scale_lr rule (TrainConfig.effective_lr)."""
        super().__init__()
        self.automatic_optimization = False
        self.batch_size = batch_size
        self.model = model if isinstance(model, Autoencoder) else Autoencoder(model)
        self.train_config = train
        if train.perceptual_weight > 0 and perceptual is None:
            raise ValueError(
                "perceptual_weight > 0 needs an LPIPS module: pass perceptual=build_lpips(weight,"
                " vgg_weights_path), or set perceptual_weight to 0"
            )
        self.perceptual = perceptual if train.perceptual_weight > 0 else None
        self.discriminator = (
            PatchDiscriminator(self.model.config.out_channels, train.disc_channels, train.disc_layers)
            if train.disc_weight > 0
            else None
        )
        self.ema = (
            AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(train.ema_decay), use_buffers=True)
            if train.ema_decay > 0
            else None
        )
        self.register_buffer("ae_step", torch.zeros((), dtype=torch.long))
        n_codes = self.model.config.n_embed if self.model.quantizer is not None else 0
        self.register_buffer("code_usage", torch.zeros(n_codes, dtype=torch.long), persistent=False)
        self.register_buffer(DRAWN, torch.zeros((), dtype=torch.long))  # batches given to training_step
        self._generator: torch.Generator | None = None
        self._seeded_at = -1
        self.bad_steps = BadSteps(train.max_bad_steps, "autoencoder")

    # ---------------------------------------------------------------- helpers

    def train(self, mode: bool = True) -> AutoencoderModule:
        """Switch train/eval mode, keeping LPIPS in eval (its dropout stays off)."""
        super().train(mode)
        if self.perceptual is not None:
            self.perceptual.eval()
        return self

    def export_model(self) -> Autoencoder:
        """The weights to ship: the EMA copy when EMA is on, else the trained model."""
        return self.ema.module if self.ema is not None else self.model  # type: ignore[return-value]

    def _rng(self, device: torch.device) -> torch.Generator:
        """This batch's generator (posterior noise, code restarts), seeded from (seed, batches drawn): a resumed
        run draws the noise of a whole one."""
        if self._generator is None or self._generator.device != device or self._seeded_at != int(self.batches_drawn):
            self._seeded_at = int(self.batches_drawn)
            seed = self.train_config.seed * _MIX + self._seeded_at
            self._generator = torch.Generator(device=device).manual_seed(seed)
        return self._generator

    @staticmethod
    def _images(batch: Any) -> torch.Tensor:
        """The image tensor of a batch: a tensor, or the first item of a tuple/list."""
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        if not torch.is_tensor(x) or x.ndim != 4 or not x.is_floating_point():
            raise TypeError("expected float image batches [N x C x H x W] in [-1, 1]")
        return x

    def _clip(self, optimizer: Any, name: str) -> None:
        """Log the gradient norm of `optimizer`'s parameters (train/grad_norm_<name>), then clip it if set."""
        log_grad_norm(self, [p for group in optimizer.param_groups for p in group["params"]], f"train/grad_norm_{name}")
        if self.train_config.grad_clip > 0:
            self.clip_gradients(optimizer, gradient_clip_val=self.train_config.grad_clip,
                                gradient_clip_algorithm="norm")

    def _reg_term(self, out: AutoencoderOutput, x: torch.Tensor) -> torch.Tensor:
        tc = self.train_config
        if out.posterior is not None:
            # The reference sums L1 over pixels; we average, so the KL sum is divided by
            # the pixel count too and kl_weight keeps its meaning (~1e-6, App. F).
            return tc.kl_weight * out.reg_loss / x[0].numel()
        return tc.codebook_weight * out.reg_loss

    # --------------------------------------------------------------- training

    def training_step(self, batch: Any, batch_idx: int) -> None:
        """One generator step and, once `disc_start` is reached, one discriminator step."""
        x = self._images(batch)
        self.batches_drawn += 1
        tc = self.train_config
        optimizers = self.optimizers()
        opt_ae, opt_d = optimizers if isinstance(optimizers, list) else (optimizers, None)
        gan_on = self.discriminator is not None and int(self.ae_step) >= tc.disc_start

        # Generator step (E, D): Eq. 25 without the log D_psi(x) term.
        out = self.model(x, sample_posterior=tc.sample_posterior, generator=self._rng(x.device))
        rec = reconstruction_loss(x, out.x_rec, self.perceptual, tc.perceptual_weight)
        reg = self._reg_term(out, x)
        total = rec + reg
        logs = {"rec": rec.detach(), "kl" if out.posterior is not None else "vq": out.reg_loss.detach()}
        if gan_on:
            g = hinge_g_loss(self.discriminator(out.x_rec))
            d_weight = adaptive_weight(rec, g, self.model.last_layer, tc.disc_weight)
            total = total + d_weight * g
            logs.update(g=g.detach(), d_weight=d_weight)
        if self.bad_steps.skip(self, {"reconstruction": rec, "regularizer": reg, "total": total}, int(self.ae_step)):
            return  # no update; the batch does not count
        opt_ae.zero_grad(set_to_none=True)
        self.manual_backward(total)
        self._update_codebook(out)
        self._clip(opt_ae, "ae")
        opt_ae.step()
        self._step_schedulers()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        logs["total"] = total.detach()

        # Discriminator step (psi): hinge form of max log D(x) + log(1 - D(x_rec)).
        if gan_on and opt_d is not None:
            d = hinge_d_loss(self.discriminator(x.detach()), self.discriminator(out.x_rec.detach()))
            if not self.bad_steps.skip(self, {"discriminator": d}, int(self.ae_step)):
                opt_d.zero_grad(set_to_none=True)
                self.manual_backward(d)
                self._clip(opt_d, "disc")
                opt_d.step()
                logs["d"] = d.detach()

        if out.quant is not None:
            self._track_codes(out)
            logs["perplexity"] = out.quant.perplexity
        self.ae_step += 1
        self.log_dict({f"train/{k}": v for k, v in logs.items()}, prog_bar=True, batch_size=x.shape[0])

    def _update_codebook(self, out: AutoencoderOutput) -> None:
        """EMA codebook: move each code toward the encoder outputs that picked it in this pass."""
        quantizer = self.model.quantizer
        if quantizer is not None and quantizer.ema_decay > 0:
            # Before the optimizer step, so z is projected as it was when the codes were picked.
            quantizer.update_codebook(out.z, out.quant.indices)

    def _track_codes(self, out: AutoencoderOutput) -> None:
        """Accumulate code usage; restart unused codes every `vq_restart_every` batches."""
        self.code_usage += out.quant.usage
        every = self.train_config.vq_restart_every
        if every and (int(self.ae_step) + 1) % every == 0:
            restarted = self.model.quantizer.restart_dead_codes(
                out.z, self.code_usage, generator=self._rng(out.z.device)
            )
            self.log("train/restarted_codes", float(restarted))
            self.code_usage.zero_()

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        """Reconstruction L1 and PSNR of the exported (EMA if on) model, posterior mean."""
        x = self._images(batch)
        out = self.export_model()(x, sample_posterior=False)
        x_rec = out.x_rec.clamp(-1.0, 1.0)
        self.log("val/rec", (x - x_rec).abs().mean(), prog_bar=True, batch_size=x.shape[0])
        self.log("val/psnr", psnr(x_rec, x).mean(), prog_bar=True, batch_size=x.shape[0])

    def _step_schedulers(self) -> None:
        schedulers = self.lr_schedulers()
        for scheduler in schedulers if isinstance(schedulers, list) else [schedulers] if schedulers else []:
            scheduler.step()

    def _lr_factor(self, batch: int) -> float:
        """Cosine decay from 1 to 0 over `decay_steps` batches."""
        n = self.train_config.decay_steps
        return 0.5 * (1.0 + math.cos(math.pi * min(batch, n) / n))

    def configure_optimizers(self) -> Any:
        """Adam (betas 0.5, 0.9) for the autoencoder and, if used, the discriminator."""
        tc = self.train_config
        betas = (tc.beta1, tc.beta2)
        lr = tc.effective_lr(self.batch_size, self.trainer.world_size if self._trainer is not None else 1)
        optimizers = [torch.optim.Adam(self.model.parameters(), lr=lr, betas=betas)]
        if self.discriminator is not None:
            optimizers.append(
                torch.optim.Adam(self.discriminator.parameters(), lr=tc.disc_lr or lr, betas=betas)
            )
        if tc.lr_decay == "constant":
            return optimizers
        if tc.decay_steps < 1:
            raise ValueError("train.lr_decay 'cosine' needs decay_steps >= 1; call TrainConfig.resolved(steps) first")
        # Stepped once per batch in training_step (manual optimization).
        return optimizers, [torch.optim.lr_scheduler.LambdaLR(opt, self._lr_factor) for opt in optimizers]

    # ----------------------------------------------------------- checkpoints

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Leave the frozen LPIPS network out of checkpoints."""
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith("perceptual.")]:
            del state[key]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Put the current LPIPS weights back so strict loading still matches."""
        if self.perceptual is not None:
            checkpoint["state_dict"].update(
                {f"perceptual.{k}": v for k, v in self.perceptual.state_dict().items()}
            )
