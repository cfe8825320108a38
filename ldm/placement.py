"""Where a stage's processes run: Lightning's accelerator, devices, num_nodes and strategy.

Every rank runs the same script, started by Lightning's own launcher (`devices: N`
on one machine), torchrun or SLURM (which start every rank themselves and say so
in the environment). Before a process group exists, `is_launch_rank_zero` tells
the process that will be global rank 0: the one that clears and writes outputs.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any, Literal

Strategy = Literal["auto", "ddp", "ddp_spawn"]
RANK_VARIABLES = ("RANK", "SLURM_PROCID", "NODE_RANK", "LOCAL_RANK")  # torchrun, SLURM, Lightning's own launcher


@dataclass(frozen=True)
class Placement:
    """Where a run's processes go: Lightning's Trainer arguments of the same names.

    `devices` "auto" is every GPU, else one CPU process; on CPUs, `devices: N` with
    strategy ddp runs N processes over gloo (each with `threads` torch threads).
    """

    accelerator: Literal["auto", "cpu", "gpu"] = "auto"
    devices: int | Literal["auto"] = "auto"
    num_nodes: int = 1
    strategy: Strategy = "auto"

    def __post_init__(self) -> None:
        if self.devices != "auto" and (not isinstance(self.devices, int) or self.devices < 1):
            raise ValueError(f"devices must be 'auto' or >= 1, got {self.devices!r}")
        if self.num_nodes < 1:
            raise ValueError(f"num_nodes must be >= 1, got {self.num_nodes}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_launch_rank_zero() -> bool:
    """True in the process that is (or will be) global rank 0, before any process group exists: every rank
    variable a launcher sets is 0, or none is set (Lightning's own launcher starts the others later)."""
    return all(os.environ.get(name, "0") == "0" for name in RANK_VARIABLES)
