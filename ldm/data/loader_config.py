"""How a stage's DataLoader feeds the model, with no torch import: worker processes, prefetch, pinned memory."""

from __future__ import annotations

from dataclasses import dataclass

from ldm.config import Config


@dataclass(frozen=True)
class LoaderSettings(Config):
    """DataLoader settings of one stage; the batches do not depend on them, only the speed does."""

    section = "loader"

    num_workers: int = 0  # processes decoding samples; 0 decodes in the training process
    prefetch_factor: int = 2  # batches each worker keeps ready (workers > 0 only)
    pin_memory: bool = True  # page-locked host batches for faster copies; only on a GPU

    def __post_init__(self) -> None:
        if not isinstance(self.num_workers, int) or not 0 <= self.num_workers <= 256:
            raise ValueError(f"loader.num_workers must be an integer in 0..256, got {self.num_workers!r}")
        if not isinstance(self.prefetch_factor, int) or self.prefetch_factor < 1:
            raise ValueError(f"loader.prefetch_factor must be an integer >= 1, got {self.prefetch_factor!r}")
