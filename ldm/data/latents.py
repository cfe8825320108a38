"""Streaming cached latents into LDM training batches.

Latent shards hold `LatentSample`s (ldm.data.schema). Batches are dicts that
`ldm.latent_diffusion.LDMTrainingModule` reads: "z" [N x C x h x w] already
multiplied by the scale factor, "label" [N] long, "caption" list[str] and, for
super-resolution pairs, "lr" [N x 3 x H x W] in [-1, 1] (the concat key); with label maps
(stage label_maps), "label_map" [N x H x W] long ids (IGNORE_INDEX unlabelled) and "layout"
list[str] (each the Layout's JSON).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, default_collate

from ldm.data.loader import batch_loader, raw_samples, to_tensor
from ldm.data.loader_config import LoaderSettings
from ldm.data.schema import LatentSample, RawSample


def latent_sample(raw: RawSample, scale_factor: float) -> dict[str, Any]:
    """One raw shard sample -> {"z", "label", "caption"[, "lr"][, "label_map", "layout"]} (the module docstring)."""
    sample = LatentSample.decode(raw)
    out: dict[str, Any] = {
        "z": torch.from_numpy(np.asarray(sample.latent, dtype=np.float32)) * scale_factor,  # (C, h, w)
        "label": sample.label,
        "caption": sample.caption,
    }
    if sample.lr is not None:
        out["lr"] = to_tensor(sample.lr)  # (3, H, W)
    if sample.label_map is not None:
        out["label_map"] = torch.from_numpy(sample.label_map.astype(np.int64))  # (H, W)
    if sample.layout is not None:
        out["layout"] = json.dumps(sample.layout.to_dict())
    return out


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack a list of latent samples into a batch dict (strings stay a list)."""
    return default_collate(samples)


def latent_dataset(urls: list[str], *, scale_factor: float, shuffle: int = 0, seed: int = 0,
                   transform: Callable[[dict], dict] | None = None) -> wds.DataPipeline:
    """Latent samples from latent shards (see `ldm.data.loader.raw_samples` for the options)."""
    stages = raw_samples(urls, shuffle=shuffle, seed=seed)
    stages.append(wds.map(partial(latent_sample, scale_factor=scale_factor)))
    if transform is not None:
        stages.append(wds.map(transform))
    return wds.DataPipeline(*stages)


def latent_loader(urls: list[str], *, scale_factor: float, batch_size: int, settings: LoaderSettings, shuffle: int = 0,
                  seed: int = 0, endless: bool = False) -> DataLoader:
    """Batch dicts of latent shards (the module docstring), the same for any worker count (`ldm.data.loader.batch_loader`)."""
    raw = raw_samples(urls, shuffle=shuffle, seed=seed, split_by_worker=False)
    return batch_loader(raw, partial(latent_sample, scale_factor=scale_factor), batch_size=batch_size, settings=settings,
                        collate=collate, endless=endless)
