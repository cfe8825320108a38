"""Streaming cached latents into LDM training batches.

A latent shard sample `KEY` holds `latent.npy` ([C x h x w], fp16 or fp32, unscaled),
`cls`, `txt`, `json` and, for super-resolution pairs, `lr.png`. Batches are dicts
that `ldm.unet.LDMTrainingModule` reads: "z" [N x C x h x w] already multiplied by
the scale factor, "cls" [N] long, "txt" list[str], and "lr" [N x 3 x H x W] in [-1, 1].
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import default_collate

from ldm.data.loader import raw_samples, to_tensor


def latent_sample(sample: dict[str, Any], scale_factor: float) -> dict[str, Any]:
    """One decoded shard sample -> {"z", "cls", "txt"[, "lr"]} (see the module docstring)."""
    out: dict[str, Any] = {
        "z": torch.from_numpy(np.asarray(sample["latent.npy"], dtype=np.float32)) * scale_factor,  # (C, h, w)
        "cls": int(sample["cls"]),
        "txt": sample["txt"],
    }
    if "lr.png" in sample:
        out["lr"] = to_tensor(sample["lr.png"])  # (3, H, W)
    return out


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack a list of latent samples into a batch dict (strings stay a list)."""
    return default_collate(samples)


def latent_dataset(urls: list[str], *, scale_factor: float, shuffle: int = 0, seed: int = 0,
                   split_by_node: bool = True, transform: Callable[[dict], dict] | None = None) -> wds.DataPipeline:
    """Latent samples from latent shards (see `ldm.data.loader.raw_samples` for the options)."""
    stages = raw_samples(urls, shuffle=shuffle, seed=seed, split_by_node=split_by_node)
    stages += [wds.decode("rgb8"), wds.map(partial(latent_sample, scale_factor=scale_factor))]
    if transform is not None:
        stages.append(wds.map(transform))
    return wds.DataPipeline(*stages)
