"""What a stage does with input it cannot use: the choices params offer (no I/O, no heavy imports)."""

from __future__ import annotations

from typing import Literal

OnCorrupt = Literal["fail", "skip"]  # params `data.on_corrupt`: see ldm.data.survey
