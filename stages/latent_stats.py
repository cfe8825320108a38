"""The latent cache's statistics: the paper's first-batch std beside the dataset-level one, and the scale factor.

Read back from the written shards (in the stored dtype), so the numbers describe
exactly what the LDM stages will train on.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ldm.data.shards import read_shards
from ldm.latents import RunningMoments, choose_scale_factor, first_batch_std
if TYPE_CHECKING:  # stages.params imports the section types; avoid the cycle at run time
    from stages.training_params import CacheLatentsParams


def _latents(shards: list[Path]):
    for sample in read_shards(shards):
        yield np.load(io.BytesIO(sample["latent.npy"]), allow_pickle=False)


def _moments(shards: list[Path], batch_size: int) -> tuple[RunningMoments | None, torch.Tensor | None, int]:
    """Streaming moments over shards, batch by batch; the first batch kept for the paper's estimator."""
    moments, first, batch, count = None, None, [], 0
    for z in _latents(shards):
        batch.append(z)
        count += 1
        if len(batch) == batch_size:
            moments, first = _fold(moments, first, batch)
            batch = []
    if batch:
        moments, first = _fold(moments, first, batch)
    return moments, first, count


def _fold(moments: RunningMoments | None, first: torch.Tensor | None, batch: list[np.ndarray]):
    z = torch.from_numpy(np.stack(batch).astype(np.float32))  # (N, C, h, w)
    if moments is None:
        moments, first = RunningMoments(z.shape[1]), z
    moments.update(z)
    return moments, first


def _summary(moments: RunningMoments) -> dict[str, Any]:
    return {"mean": moments.overall_mean, "std": moments.overall_std,
            "channel_mean": [round(float(v), 6) for v in moments.mean],
            "channel_std": [round(float(v), 6) for v in moments.var.sqrt()],
            "entries": moments.count * len(moments.mean), "non_finite": moments.non_finite}


def latent_stats(cache: Path, *, kind: str, params: CacheLatentsParams) -> dict[str, Any]:
    """stats.json's measured part for the cache folder (train image latents set the scale)."""
    counts, warnings = {}, []
    for split in ("train", "val"):
        for prefix in ("", "pairs/"):
            shards = sorted(cache.glob(f"{prefix}{split}-*.tar"))
            if shards:
                counts[f"{prefix.rstrip('/') + '_' if prefix else ''}{split}"] = sum(1 for _ in _latents(shards))
    moments, first, _ = _moments(sorted(cache.glob("train-*.tar")), params.batch_size)
    if moments is None or first is None:
        raise ValueError(f"{cache}: no train latents were written")
    first_std = first_batch_std(first)
    dataset = _summary(moments)
    if moments.non_finite:
        warnings.append(f"{moments.non_finite} latent entries are NaN or inf: the autoencoder is broken; retrain it")
    scale = choose_scale_factor(params.scale_rule, kind=kind, dataset_std=dataset["std"], first_std=first_std,
                                fixed=params.scale_value)
    scaled_std = scale * dataset["std"]
    if abs(scaled_std - 1.0) > params.std_tolerance:
        warnings.append(f"scaled latent std is {scaled_std:.4f}, more than {params.std_tolerance} from 1 "
                        f"(scale_rule {params.scale_rule}); the LDM's noise schedule assumes unit variance")
    return {
        "counts": counts,
        "first_batch": {"std": first_std, "samples": int(first.shape[0]),
                        "scale_factor": 1.0 / first_std if first_std > 0 else None},
        "dataset": {**dataset, "samples": counts.get("train", 0), "scale_factor": 1.0 / dataset["std"] if dataset["std"] > 0 else None},
        "first_batch_vs_dataset": {"std_ratio": first_std / dataset["std"] if dataset["std"] > 0 else None,
                                   "relative_error": abs(first_std - dataset["std"]) / dataset["std"] if dataset["std"] > 0 else None},
        "scale_rule": params.scale_rule,
        "scale_factor": scale,
        "scaled_std": scaled_std,
        "kind": kind,
        "warnings": warnings,
    }
