"""Faults: NaN latents in the cache make NaN losses in train_ldm; a cache shard changed after caching.

A few poisoned samples: their steps are skipped (no update), counted in the report, and the run ends
with finite weights. A poisoned cache: after `max_bad_steps` skipped steps in a row the stage stops
with one line naming the step and the checkpoint it keeps.
"""

from __future__ import annotations

import csv
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ldm.data.schema import LatentSample
from ldm.data.shards import read_shards, write_shard
from ldm.errors import InvalidInput
from ldm.trainer import NonFiniteLossError
from stages.params import parse_params
from stages.train_ldm import Paths, run

DATA = {"resolution": 64, "shard_size": 40}  # as conftest.ldm_inputs
SHORT = {"steps": 6, "batch_size": 8, "val_every": 6, "checkpoint_every": 3, "threads": 1, "shuffle_buffer": 0}


@pytest.fixture(autouse=True, scope="module")
def _quiet():
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)


def _poisoned(ldm_inputs: Path, tmp_path: Path, every: int, record_shards) -> Path:
    """A copy of the cache inputs whose first train shard has NaN in every `every`-th latent."""
    out = tmp_path / "inputs"
    shutil.copytree(ldm_inputs, out, ignore=shutil.ignore_patterns("images", "pairs", "masks"))
    shard = sorted((out / "latents").glob("train-*.tar"))[0]
    samples = [LatentSample.decode(raw) for raw in read_shards([shard])]
    for sample in samples[::every]:
        sample.latent[0, 0, 0] = np.nan
    write_shard(shard, samples)
    record_shards(out / "latents")  # as if cache_latents itself had written the NaN (a broken autoencoder)
    return out


def test_a_latent_shard_changed_after_caching_is_refused(ldm_inputs, tmp_path, record_shards):
    inputs = _poisoned(ldm_inputs, tmp_path, every=16, record_shards=record_shards)
    (inputs / "latents" / "stats.json").write_text((ldm_inputs / "latents" / "stats.json").read_text())  # the old record
    with pytest.raises(InvalidInput, match=r"train-000000\.tar: its sha256 differs from the one .*stats\.json records"):
        _run(inputs, tmp_path)


def _run(inputs: Path, out: Path, **recipe) -> dict:
    params = parse_params({"data": DATA, "train_ldm": {**SHORT, "recipe": {"warmup_steps": 0, **recipe}}})
    return run(params, Paths(inputs / "latents", inputs / "models" / "autoencoder", out / "model", out / "ckpt",
                             out / "metrics.json", out / "loss.csv", "train_ldm"))


def test_a_few_nan_latents_are_skipped_counted_and_the_weights_stay_finite(ldm_inputs, tmp_path, record_shards):
    inputs = _poisoned(ldm_inputs, tmp_path, every=16, record_shards=record_shards)  # the first batch of 8 of each 16 holds one NaN latent
    metrics = _run(inputs, tmp_path)
    assert metrics["train"]["batches"] == 6 and metrics["train"]["skipped_steps"] >= 1
    weights = load_file(str(tmp_path / "model" / "model.safetensors"))
    assert all(bool(torch.isfinite(w).all()) for w in weights.values())
    rows = list(csv.DictReader((tmp_path / "ckpt" / "logs" / "metrics.csv").open()))
    norms = [float(row["train/grad_norm"]) for row in rows if row.get("train/grad_norm")]
    assert norms and all(np.isfinite(norms) & (np.array(norms) > 0))  # logged before clipping, every update


def test_a_poisoned_cache_stops_after_max_bad_steps_keeping_the_checkpoint(ldm_inputs, tmp_path, record_shards):
    inputs = _poisoned(ldm_inputs, tmp_path, every=1, record_shards=record_shards)  # every batch from the first shard is NaN
    with pytest.raises(NonFiniteLossError, match=r"diffusion loss is NaN or inf at step \d+, 3 steps in a row"
                                                 r" \(limit max_bad_steps=2\).*no checkpoint was written yet"):
        _run(inputs, tmp_path, max_bad_steps=2)
    assert not (tmp_path / "model").exists() and not (tmp_path / "metrics.json").exists()
