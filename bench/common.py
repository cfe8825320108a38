"""What every benchmark of the suite shares: a row of the table, the interleaved median timer, the machine.

A row compares ours with a peer measured in the same run on the same input. `ratio` is what the row's
`ratio_means` says: a speed-up (the peer's time over ours, or our rate over the peer's: above 1 we are faster), a
cost (our time over the peer's, for a floor we cannot beat: a start-up, the command alone), a growth (the larger
input's figure over the smaller's), a fraction (achieved over the machine's peak) or a quality (the peer's FID
over ours: above 1 ours is closer to the reference). A goal is a bound on one of the row's figures; the table
marks each row met or missed.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results.json"
RatioMeans = Literal["speed-up", "cost", "growth", "fraction", "quality"]
Figure = Literal["ratio", "ours", "difference"]
LIBRARIES = ("torch", "diffusers", "bsrgan", "pytorch-lightning", "dvc", "prefect", "webdataset", "torch-fidelity",
             "opencv-python-headless", "numpy", "scipy")


class NotReady(Exception):
    """What a benchmark needs is not there (a peer not installed, the workspace not reproduced): says what to run."""


@dataclass(frozen=True)
class Goal:
    """`figure op bound`: figure "ratio", "ours" (our own figure) or "difference" (ours - peer)."""

    figure: Figure
    op: Literal[">=", "<="]
    bound: float

    def met(self, row: Row) -> bool | None:
        value = {"ratio": row.ratio, "ours": row.ours, "difference": None if row.peer is None else row.ours - row.peer}[self.figure]
        if value is None:
            return None
        return value >= self.bound if self.op == ">=" else value <= self.bound

    def __str__(self) -> str:
        return f"{self.figure} {self.op} {self.bound:g}"


@dataclass(frozen=True)
class Row:
    """One line of the table: our figure beside the peer's, in `unit`, and the ratio of the two."""

    group: str
    name: str
    unit: str
    ours: float
    peer: float | None
    peer_name: str
    ratio: float | None
    ratio_means: RatioMeans
    goal: Goal | None = None
    note: str = ""
    device: str = "cpu"
    extra: dict[str, Any] = field(default_factory=dict)
    suite_group: str = ""  # the bench.suite group that made it (its --only name)

    @property
    def met(self) -> bool | None:
        return None if self.goal is None else self.goal.met(self)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["goal"] = None if self.goal is None else dataclasses.asdict(self.goal)
        out["met"] = self.met
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Row:
        data = {key: value for key, value in data.items() if key != "met"}
        goal = data.pop("goal")
        return cls(**data, goal=None if goal is None else Goal(**goal))


def rate_row(group: str, name: str, unit: str, ours_s: float, peer_s: float, items: int, peer_name: str,
             goal: float | None = None, note: str = "", **extra: Any) -> Row:
    """A throughput row from the median seconds of both sides for `items` items: speed-up = peer_s / ours_s."""
    return Row(group, name, unit, items / ours_s, items / peer_s, peer_name, peer_s / ours_s, "speed-up",
               None if goal is None else Goal("ratio", ">=", goal), note, extra=extra)


@dataclass(frozen=True)
class Timing:
    """Median seconds of ours and the peer over `repeats` interleaved runs, after `warmup` runs of each."""

    ours_s: float
    peer_s: float
    repeats: int


def interleaved(ours: Callable[[], Any], peer: Callable[[], Any], repeats: int = 5, warmup: int = 1,
                sync: Callable[[], None] = lambda: None, pause_s: float = 0.0) -> Timing:
    """Time ours and the peer in turns (A B A B ...), so that a slow spell of the shared machine hits both;
    `pause_s` before each turn lets background work (loader workers' prefetch) settle the same for both."""
    for _ in range(warmup):
        ours(), peer()
    times: dict[str, list[float]] = {"ours": [], "peer": []}
    for _ in range(repeats):
        for name, fn in (("ours", ours), ("peer", peer)):
            time.sleep(pause_s)
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)
    return Timing(statistics.median(times["ours"]), statistics.median(times["peer"]), repeats)


def median_seconds(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall seconds of `fn` over `repeats` runs after `warmup`."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(threads: int) -> dict[str, Any]:
    """Where and with what the suite ran: CPU, cores, torch threads, versions, date, the project's git revision."""
    import torch

    revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return {
        "cpu": _cpu_model(), "cores": len(os.sched_getaffinity(0)), "threads": threads,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(), "platform": platform.platform(),
        "versions": {name: _version(name) for name in LIBRARIES},
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_revision": revision.stdout.strip() if revision.returncode == 0 else None,
    }
