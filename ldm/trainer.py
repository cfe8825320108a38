"""What every training run shares: the Lightning Trainer, resumable checkpoints, loss curves.

A run trains for a number of *batches*. Checkpoints go to a folder kept across
runs; a run with the same settings resumes from `last.ckpt`, a run with other
settings starts afresh (the old checkpoints are removed, and the log says so).
Loss curves are written as tidy CSV files (step plus one column per loss).

On many devices (`ldm.placement.Placement`) every rank runs the same script,
launched by Lightning itself, torchrun or SLURM; only global rank 0 clears or
writes the checkpoint folder and the stage's outputs. A checkpoint holds the full (unsharded) state, so a run resumes
on another world size; what must match is the global batch, not its split.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import pickle
import shutil
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint, TQDMProgressBar
from pytorch_lightning.loggers import CSVLogger

from ldm.errors import InvalidInput, UserError
from ldm.placement import Placement, is_launch_rank_zero

log = logging.getLogger(__name__)

RUN_FILE = "run.json"


def resolve_precision(precision: str) -> str:
    """`auto`: bf16-mixed where a GPU supports it, else full fp32."""
    if precision != "auto":
        return precision
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def lr_factor(step: int, warmup: int = 0, decay_steps: int = 0) -> float:
    """Learning-rate multiplier at optimizer step `step`: linear warm-up over `warmup` steps, then a cosine
    decay to 0 over `decay_steps` steps (0: constant)."""
    if step < warmup:
        return (step + 1) / warmup
    if not decay_steps:
        return 1.0
    return 0.5 * (1.0 + math.cos(math.pi * min(step - warmup, decay_steps) / decay_steps))


def fingerprint(settings: dict[str, Any]) -> str:
    """sha256 of settings' canonical JSON: what a checkpoint must match to be resumed."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def resume_path(folder: Path, settings: dict[str, Any], resume: bool = True) -> Path | None:
    """`last.ckpt` when `folder` holds a run with these settings (and `resume`); otherwise clear it (on rank 0)
    and return None."""
    key = fingerprint(settings)
    run_file = folder / RUN_FILE
    last = folder / "last.ckpt"
    if resume and run_file.is_file() and last.is_file():
        if json.loads(run_file.read_text()).get("fingerprint") == key:
            log.info("resuming from %s", last)
            return last
        log.info("%s holds checkpoints of other settings; starting afresh", folder)
    elif not resume and folder.exists():
        log.info("resume is off: starting afresh, %s is cleared", folder)
    if not is_launch_rank_zero():
        return None  # rank 0 clears the folder; the others only read it
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    run_file.write_text(json.dumps({"fingerprint": key, "settings": settings}, indent=2, sort_keys=True, default=str))
    return None


class NonFiniteLossError(UserError, RuntimeError):
    """Too many training steps in a row had a NaN or inf loss: training stops, the last good checkpoint is kept."""


class BadSteps:
    """Skips a training step whose loss is NaN or inf (no update), up to `limit` in a row; one more stops the fit.

    Every rank takes the same decision (a bad loss on any rank skips the step on all of them, or the
    gradient all-reduce would wait forever). `skipped` counts the steps skipped in this process's run.
    """

    def __init__(self, limit: int, what: str) -> None:
        self.limit, self.what, self.in_a_row, self.skipped = limit, what, 0, 0

    def skip(self, module: pl.LightningModule, losses: dict[str, torch.Tensor], step: int) -> bool:
        """Whether to skip this step; NonFiniteLossError once more than `limit` steps in a row were bad."""
        bad = [name for name, value in losses.items() if not bool(torch.isfinite(value.detach()).all())]
        if module._trainer is not None:
            bad_anywhere = module.trainer.strategy.reduce_boolean_decision(bool(bad), all=False)
        else:
            bad_anywhere = bool(bad)
        if not bad_anywhere:
            self.in_a_row = 0
            return False
        self.in_a_row += 1
        self.skipped += 1
        where = f"{self.what} {', '.join(bad) or 'loss on another rank'} loss is NaN or inf at step {step}"
        if self.in_a_row > self.limit:
            raise NonFiniteLossError(f"{where}, {self.in_a_row} steps in a row (limit max_bad_steps={self.limit}):"
                                     " stopped. Lower the lr, set grad_clip, or check the inputs for NaN/inf")
        log.warning("%s: step skipped (%d in a row, limit %d)", where, self.in_a_row, self.limit)
        return True


def log_grad_norm(module: pl.LightningModule, parameters: Any, name: str = "train/grad_norm") -> None:
    """Log the total L2 norm of the gradients of `parameters` (call it before clipping); nothing on a skipped step."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if grads:
        module.log(name, torch.nn.utils.get_total_norm(grads), on_step=True, on_epoch=False, batch_size=1)


class UntrustedCheckpoint(InvalidInput):
    """A checkpoint whose pickle holds more than tensors and plain containers: it is refused, nothing in it runs."""


def fit(trainer: pl.Trainer, module: pl.LightningModule, datamodule: pl.LightningDataModule, ckpt: Path | None) -> None:
    """`trainer.fit`, resuming from `ckpt` (from `resume_path`: the stage's own checkpoint folder only) loaded
    weights-only, so a crafted pickle placed there runs nothing and is refused with the file named. A run
    stopped by NaN losses (`BadSteps`) says which checkpoint it keeps."""
    try:
        with warnings.catch_warnings():  # the folder holds this run's own run.json and logs: resume_path cleared others
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
            trainer.fit(module, datamodule=datamodule, ckpt_path=str(ckpt) if ckpt else None, weights_only=True)
    except NonFiniteLossError as exc:
        last = Path(trainer.checkpoint_callback.dirpath or ".") / "last.ckpt"  # type: ignore[union-attr]
        kept = f"the last good checkpoint is {last}" if last.is_file() else "no checkpoint was written yet"
        raise NonFiniteLossError(f"{exc}; {kept}") from None
    except pickle.UnpicklingError as exc:
        if ckpt is None:
            raise
        reason = next((line.strip() for line in str(exc).splitlines() if "GLOBAL" in line or "global" in line), "")
        raise UntrustedCheckpoint(f"{ckpt}: refused, its pickle holds more than tensors and plain data"
                                  f" ({reason[:160]}); nothing in it ran. Delete {ckpt.parent} to train afresh") from None


class StepsBar(TQDMProgressBar):
    """A progress bar over the stage's total batches (the training stream never ends by itself)."""

    def __init__(self, total: int, done: Any) -> None:
        super().__init__(leave=True)
        self._total, self._done = total, done

    def on_train_epoch_start(self, trainer: pl.Trainer, *_: Any) -> None:
        super().on_train_epoch_start(trainer)
        self.train_progress_bar.total = self._total
        self.train_progress_bar.n = self.train_progress_bar.initial = int(self._done())
        self.train_progress_bar.set_description("training")

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *_: Any) -> None:
        bar = self.train_progress_bar
        bar.n = int(self._done())
        bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
        bar.refresh()


class StopAfter(Callback):
    """Stop the fit once `done()` batches are trained (Lightning's max_steps counts optimizer steps)."""

    def __init__(self, total: int, done: Any) -> None:
        self._total, self._done = total, done

    def on_train_batch_end(self, trainer: pl.Trainer, *_: Any) -> None:
        if self._done() >= self._total:
            trainer.should_stop = True

    def on_train_start(self, trainer: pl.Trainer, *_: Any) -> None:
        if self._done() >= self._total:
            trainer.should_stop = True


def make_trainer(
    *,
    steps: int,
    done: Any,
    val_every: int,
    checkpoints: Path,
    checkpoint_every: int,
    logs: Path,
    precision: str,
    placement: Placement = Placement(),
    grad_clip: float = 0.0,
    accumulate: int = 1,
    callbacks: list[Callback] | None = None,
) -> pl.Trainer:
    """A Trainer over an endless batch stream that stops after `steps` batches (`done()` counts them);
    with `accumulate` > 1, `done()` counts optimizer steps of `accumulate` batches each. The data
    loaders split shards by rank themselves (`ldm.data.loader.rank_shards`)."""
    return pl.Trainer(
        **placement.to_dict(),
        use_distributed_sampler=False,
        precision=resolve_precision(precision),  # type: ignore[arg-type]
        max_epochs=-1,
        max_steps=-1,
        val_check_interval=val_every,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        gradient_clip_val=grad_clip or None,
        accumulate_grad_batches=accumulate,
        logger=CSVLogger(str(logs), name="", version=""),
        log_every_n_steps=max(1, min(10, steps // 50)),
        callbacks=[
            StopAfter(steps, done),
            StepsBar(steps, done),
            ModelCheckpoint(dirpath=str(checkpoints), every_n_train_steps=checkpoint_every, save_last=True,
                            save_top_k=-1, filename="step-{step}"),
            *(callbacks or []),
        ],
        enable_model_summary=False,
        deterministic=False,
    )


def write_curves(metrics_csv: Path, out: Path, columns: dict[str, str]) -> int:
    """Tidy the CSVLogger file into `out`: `step` plus `columns` (new name -> logged name), complete rows only."""
    rows = []
    if metrics_csv.is_file():
        with metrics_csv.open() as stream:
            for row in csv.DictReader(stream):
                values = {new: row.get(old, "") for new, old in columns.items()}
                if all(v not in ("", None) and math.isfinite(float(v)) for v in values.values()):
                    rows.append({"step": int(row["step"]) + 1, **{k: f"{float(v):.6g}" for k, v in values.items()}})
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=["step", *columns])
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)
