"""The choices of the latent cache, with no torch import: how a latent is drawn and how its scale is chosen (App. F)."""

from __future__ import annotations

from typing import Literal

Posterior = Literal["mode", "sample"]  # KL: the posterior mean, or a sample seeded per key
ScaleRule = Literal["auto", "dataset", "first_batch", "fixed", "none"]  # auto: dataset for KL, none for VQ
LatentDtype = Literal["float16", "float32"]  # as stored in the shards
