"""train_ldm on two CPU processes (DDP over gloo) against one process with the same global batch.

The cache is cut into shards of one per-rank batch and read without shuffling, so
the two ranks' batch k (shards 2k and 2k + 1, disjoint) together are the single
process's batch k; each sample draws its timestep and noise by its place in the
global batch. The weights may then differ only by the order of floating-point
sums: TOLERANCE. Both of Lightning's ways in are run: its own launcher
(`devices: 2`) and torchrun.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from ldm.data.loader import shard_urls
from ldm.data.schema import RawSample
from ldm.data.shards import read_shards, write_split
from ldm.errors import InvalidInput
from ldm.latents.stats import STATS
from stages.params import parse_params
from stages.train_ldm import Paths, run

PER_RANK = 8
TOLERANCE = 1e-5  # max |w_2 - w_1| over every weight, after 3 steps (measured: below 1e-6)
DATA = {"resolution": 64, "shard_size": 40}  # as conftest.ldm_inputs
LOOP = {"steps": 3, "val_every": 3, "checkpoint_every": 2, "threads": 1, "shuffle_buffer": 0,
        "accelerator": "cpu", "recipe": {"lr": 1e-3, "scale_lr": False}}


class _Raw:
    """A raw shard sample written back as it was read (the same bytes, another shard)."""

    def __init__(self, raw: RawSample):
        self.raw = raw

    def encode(self) -> RawSample:
        return {k: v for k, v in self.raw.items() if not k.startswith("__") or k == "__key__"}


@pytest.fixture(scope="module")
def cache(ldm_inputs, tmp_path_factory, record_shards) -> Path:
    """ldm_inputs' latent cache, its train split cut into shards of PER_RANK samples."""
    out = tmp_path_factory.mktemp("ddp-cache") / "latents"
    out.mkdir()
    shutil.copy(ldm_inputs / "latents" / STATS, out / STATS)
    for split in ("train", "val"):
        samples = [_Raw(raw) for raw in read_shards(shard_urls(ldm_inputs / "latents", split))]
        write_split(samples, out, split, PER_RANK if split == "train" else 100)
    record_shards(out)
    return out


def _paths(cache: Path, ldm_inputs: Path, out: Path) -> Paths:
    return Paths(cache, ldm_inputs / "models" / "autoencoder", out / "model", out / "ckpt", out / "metrics.json",
                 out / "loss.csv", "train_ldm")


def _launch(launcher: list[str], cache: Path, ldm_inputs: Path, out: Path, loop: dict) -> subprocess.CompletedProcess:
    out.mkdir(parents=True, exist_ok=True)
    params = out / "params.yaml"
    params.write_text(yaml.safe_dump({"data": DATA, "train_ldm": loop}))
    paths = _paths(cache, ldm_inputs, out)
    args = [f"--{name}={getattr(paths, name)}" for name in Paths.__dataclass_fields__]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    return subprocess.run([*launcher, "-m", "stages.train_ldm", f"--params={params}", *args], env=env,
                          capture_output=True, text=True, timeout=600)


def _max_difference(a: Path, b: Path) -> float:
    first, second = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert first.keys() == second.keys()
    return max(float((first[k].float() - second[k].float()).abs().max()) for k in first)


@pytest.fixture(scope="module")
def single(cache, ldm_inputs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp-single")
    run(parse_params({"data": DATA, "train_ldm": {**LOOP, "batch_size": 2 * PER_RANK}}), _paths(cache, ldm_inputs, out))
    return out


@pytest.fixture(scope="module", params=["lightning", "torchrun"])
def two(request, cache, ldm_inputs, tmp_path_factory) -> tuple[Path, str]:
    """The same run on 2 ranks of PER_RANK, started by Lightning's launcher or torchrun: its folder and stderr."""
    out = tmp_path_factory.mktemp(f"ddp-{request.param}")
    command = ([sys.executable] if request.param == "lightning" else
               [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"])
    result = _launch(command, cache, ldm_inputs, out, {**LOOP, "batch_size": PER_RANK, "devices": 2, "strategy": "ddp"})
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result.stderr


def test_two_processes_equal_one_with_the_same_global_batch(two, cache, single):
    out, stderr = two
    assert _max_difference(single / "model", out / "model") < TOLERANCE
    metrics, one = (json.loads((folder / "metrics.json").read_text()) for folder in (out, single))
    assert metrics["distributed"]["world_size"] == 2 and metrics["distributed"]["global_batch"] == 2 * PER_RANK
    assert metrics["val"]["val/loss"] == pytest.approx(one["val"]["val/loss"], abs=TOLERANCE)
    # Each rank said which shards it trains on: disjoint, together all of them.
    reads = dict(re.findall(r"rank (\d) of 2 trains on \d+ shards: (\S+)", stderr))
    assert set(reads) == {"0", "1"}
    names = [set(reads[r].split(",")) for r in ("0", "1")]
    assert not names[0] & names[1] and len(names[0] | names[1]) == len(shard_urls(cache, "train"))


def test_a_checkpoint_resumes_on_another_world_size(two, cache, ldm_inputs):
    """The two ranks' checkpoint of step 2, as if they had died there; one process of the same global batch resumes."""
    out, _ = two
    ckpt = out / "ckpt"
    shutil.copy(next(ckpt.glob("step-*2.ckpt")), ckpt / "last.ckpt")
    metrics = run(parse_params({"data": DATA, "train_ldm": {**LOOP, "batch_size": 2 * PER_RANK}}),
                  _paths(cache, ldm_inputs, out))
    assert metrics["train"]["resumed_from"] == str(ckpt / "last.ckpt")
    assert metrics["train"]["batches"] == 3 and metrics["distributed"]["world_size"] == 1
    again = run(parse_params({"data": DATA, "train_ldm": {**LOOP, "batch_size": 2 * PER_RANK, "resume": False}}),
                _paths(cache, ldm_inputs, out))
    assert again["train"]["resumed_from"] is None and again["train"]["batches"] == 3  # resume: false starts afresh


def test_fewer_shards_than_ranks_is_a_clear_error(ldm_inputs, tmp_path):
    params = parse_params({"data": DATA, "train_ldm": {**LOOP, "devices": 3, "strategy": "ddp"}})
    with pytest.raises(InvalidInput, match="2 training shards for 3 ranks: every rank needs at least one"):
        run(params, _paths(ldm_inputs / "latents", ldm_inputs, tmp_path))
    assert not (tmp_path / "model").exists()
