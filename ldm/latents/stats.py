"""The latent cache's statistics (App. F, C.1): the paper's first-batch std beside the dataset-level one, the scale factor.

`measure_latent_stats` reads the written latent shards back (in the stored
dtype), so the numbers describe exactly what the LDM stages train on.
`LatentStats` is `stats.json`: written by cache_latents, last (the cache's
completion marker, also in a bucket), read by train_ldm.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ldm.config import Config
from ldm.data.location import Location, join
from ldm.data.remote import read_marker, sha256_of
from ldm.data.schema import LatentSample
from ldm.data.shards import read_shards
from ldm.errors import InvalidInput
from ldm.latents.config import LatentDtype, Posterior, ScaleRule
from ldm.latents.moments import RunningMoments, choose_scale_factor, first_batch_std
from ldm.reports import write_json

STATS = "stats.json"  # in the cache folder
SPLITS = ("train", "val")
PAIRS = "pairs"  # the cache's subfolder of super-resolution pairs


@dataclass(frozen=True)
class FirstBatch(Config):
    """The reference's estimate: the std of the first batch's entries (and 1 / it)."""

    std: float
    samples: int
    scale_factor: float | None


@dataclass(frozen=True)
class DatasetMoments(Config):
    """Moments over every train latent: overall and per channel (float64 streaming, Chan et al.)."""

    mean: float
    std: float
    channel_mean: tuple[float, ...]
    channel_std: tuple[float, ...]
    entries: int
    non_finite: int
    samples: int
    scale_factor: float | None


@dataclass(frozen=True)
class EstimateGap(Config):
    """How far the first-batch estimate is from the dataset's std."""

    std_ratio: float | None
    relative_error: float | None


@dataclass(frozen=True)
class LatentStats(Config):
    """stats.json of a latent cache: what was measured, the scale factor chosen, and what it was measured on."""

    section = "stats.json"

    kind: str  # the autoencoder's kind: kl | vq
    counts: dict[str, int]  # latents per split; "pairs_<split>" for the SR pairs
    first_batch: FirstBatch
    dataset: DatasetMoments
    first_batch_vs_dataset: EstimateGap
    scale_rule: ScaleRule
    scale_factor: float  # z_model = z_autoencoder * scale_factor
    scaled_std: float
    warnings: tuple[str, ...] = ()
    autoencoder_sha256: str = ""
    autoencoder_preset: str = ""
    posterior: Posterior = "mode"
    dtype: LatentDtype = "float16"
    shards: dict[str, str] = field(default_factory=dict)  # shard path in the cache -> sha256
    lineage: dict[str, Any] = field(default_factory=dict)

    def report(self) -> dict[str, Any]:
        """The part a metrics report shows (no shard list)."""
        data = self.to_dict()
        return {key: data[key] for key in ("counts", "scale_factor", "scale_rule", "first_batch", "dataset", "scaled_std",
                                           "first_batch_vs_dataset", "warnings", "autoencoder_sha256", "lineage")}


def write_stats(cache: Path, stats: LatentStats) -> None:
    """stats.json into the cache folder."""
    write_json(cache / STATS, stats.to_dict())


def check_shard(stats: LatentStats, cache: Location, url: str) -> None:
    """Refuse a shard of `cache` whose sha256 differs from the one stats.json records (cut, rewritten or from
    another run after cache_latents wrote it), or that stats.json does not list; one line naming the shard."""
    if not stats.shards:
        return  # a stats.json from before the record existed: nothing to compare
    name = str(url)[len(str(cache)) + 1:]  # "train-000000.tar" or "pairs/train-000000.tar"
    recorded = stats.shards.get(name)
    if recorded is None:
        raise InvalidInput(f"{url}: not listed in {join(cache, STATS)}; the folder holds a shard cache_latents did"
                           " not write: remove it, or re-run `dvc repro --force cache_latents`")
    if sha256_of(url) != recorded:
        raise InvalidInput(f"{url}: its sha256 differs from the one {join(cache, STATS)} records: the shard changed"
                           " after cache_latents wrote it; re-run `dvc repro --force cache_latents`")


def read_stats(cache: Location) -> LatentStats:
    """stats.json of a cache folder or s3:// prefix (written last: it marks the cache complete); errors say what to run."""
    data = read_marker(cache, STATS, "cache_latents")
    try:
        return LatentStats.from_dict(json.loads(data))
    except ValueError as exc:
        raise InvalidInput(f"{join(cache, STATS)}: {exc}; re-run `dvc repro cache_latents`") from None


def _latents(shards: list[Path]) -> Iterator[np.ndarray]:
    for raw in read_shards(shards):
        yield LatentSample.decode_latent(raw)


def _moments(shards: list[Path], batch_size: int) -> tuple[RunningMoments | None, torch.Tensor | None]:
    """Streaming moments over shards, batch by batch; the first batch kept for the paper's estimator."""
    moments, first, batch = None, None, []
    for z in _latents(shards):
        batch.append(z)
        if len(batch) == batch_size:
            moments, first = _fold(moments, first, batch)
            batch = []
    if batch:
        moments, first = _fold(moments, first, batch)
    return moments, first


def _fold(moments: RunningMoments | None, first: torch.Tensor | None, batch: list[np.ndarray]):
    z = torch.from_numpy(np.stack(batch).astype(np.float32))  # (N, C, h, w)
    if moments is None:
        moments, first = RunningMoments(z.shape[1]), z
    moments.update(z)
    return moments, first


def _inverse(std: float) -> float | None:
    return 1.0 / std if std > 0 else None


def cache_counts(cache: Path) -> dict[str, int]:
    """Latents per split in a cache folder: "train", "val" and, for SR pairs, "pairs_train", "pairs_val"."""
    counts = {}
    for split in SPLITS:
        for prefix, name in (("", split), (f"{PAIRS}/", f"{PAIRS}_{split}")):
            shards = sorted(cache.glob(f"{prefix}{split}-*.tar"))
            if shards:
                counts[name] = sum(1 for _ in read_shards(shards))
    return counts


def measure_latent_stats(cache: Path, *, kind: str, batch_size: int, rule: ScaleRule, fixed: float = 1.0,
                         std_tolerance: float = 0.02) -> LatentStats:
    """The measured part of stats.json for a cache folder; the train image latents set the scale."""
    counts, warnings = cache_counts(cache), []
    moments, first = _moments(sorted(cache.glob("train-*.tar")), batch_size)
    if moments is None or first is None:
        raise InvalidInput(f"{cache}: no train latents were written; does the image folder hold train shards?")
    first_std, std = first_batch_std(first), moments.overall_std
    dataset = DatasetMoments(
        mean=moments.overall_mean, std=std, channel_mean=tuple(round(float(v), 6) for v in moments.mean),
        channel_std=tuple(round(float(v), 6) for v in moments.var.sqrt()), entries=moments.count * len(moments.mean),
        non_finite=moments.non_finite, samples=counts.get("train", 0), scale_factor=_inverse(std))
    if moments.non_finite:
        warnings.append(f"{moments.non_finite} latent entries are NaN or inf: the autoencoder is broken; retrain it")
    scale = choose_scale_factor(rule, kind=kind, dataset_std=std, first_std=first_std, fixed=fixed)
    scaled_std = scale * std
    if abs(scaled_std - 1.0) > std_tolerance:
        warnings.append(f"scaled latent std is {scaled_std:.4f}, more than {std_tolerance} from 1 "
                        f"(scale_rule {rule}); the LDM's noise schedule assumes unit variance")
    gap = EstimateGap(std_ratio=first_std / std if std > 0 else None,
                      relative_error=abs(first_std - std) / std if std > 0 else None)
    return LatentStats(kind=kind, counts=counts, first_batch=FirstBatch(first_std, int(first.shape[0]), _inverse(first_std)),
                       dataset=dataset, first_batch_vs_dataset=gap, scale_rule=rule, scale_factor=scale,
                       scaled_std=scaled_std, warnings=tuple(warnings))
