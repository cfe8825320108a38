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
import shutil
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint, TQDMProgressBar
from pytorch_lightning.loggers import CSVLogger

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
