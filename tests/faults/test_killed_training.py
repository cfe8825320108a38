"""Faults: a training or caching stage killed with SIGKILL at a random point after its first output.

The stage runs as dvc.yaml runs it (`python -m stages.<name>` in a subprocess). After a seeded random
checkpoint (training) or its first latent shard (caching) it gets SIGKILL after a seeded random delay;
then nothing of its outputs may exist, and running the same command again ends with the bytes of an
uninterrupted run: training resumes (same data order after the resume, same noise), caching starts over.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml


pytestmark = pytest.mark.slow

DATA = {"resolution": 32, "shard_size": 8}
TRAIN = {"steps": 30, "batch_size": 4, "val_every": 15, "checkpoint_every": 2, "threads": 1, "shuffle_buffer": 20}


@pytest.fixture(scope="module")
def images(tmp_path_factory, embedded_images) -> Path:
    return embedded_images(tmp_path_factory.mktemp("killed-images"), DATA, 24, 4)


def _autoencoder(tmp_path: Path, images: Path, ldm_inputs: Path) -> Callable[[Path], list[str]]:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"data": DATA, "autoencoder": {"preset": "kl-f4-tiny"},
                                      "train_autoencoder": {**TRAIN, "grid_images": 2, "recipe": {"sample_posterior": True}}}))
    return lambda out: [sys.executable, "-m", "stages.train_autoencoder", "--params", str(params), "--images", str(images),
                        "--model", str(out / "model"), "--checkpoints", str(out / "ckpt"), "--metrics", str(out / "metrics.json"),
                        "--curves", str(out / "loss.csv"), "--grid", str(out / "grid.png")]


def _ldm(tmp_path: Path, images: Path, ldm_inputs: Path) -> Callable[[Path], list[str]]:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"data": {"resolution": 64, "shard_size": 40},  # as conftest.ldm_inputs
                                      "train_ldm": {**TRAIN, "recipe": {"p_uncond": 0.2}}}))
    return lambda out: [sys.executable, "-m", "stages.train_ldm", "--section", "train_ldm", "--params", str(params),
                        "--latents", str(ldm_inputs / "latents"), "--autoencoder", str(ldm_inputs / "models" / "autoencoder"),
                        "--model", str(out / "model"), "--checkpoints", str(out / "ckpt"), "--metrics", str(out / "metrics.json"),
                        "--curves", str(out / "loss.csv")]


def _kill_after_a_checkpoint(command: list[str], checkpoints: Path, rng: random.Random, cwd: Path) -> int:
    """Run `command`, SIGKILL it a random moment after a random checkpoint from the first to the middle; the step."""
    step = 2 * rng.randint(1, TRAIN["steps"] // 4)
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (checkpoints / f"step-step={step}.ckpt").exists():
        assert process.poll() is None, "the stage ended before the checkpoint"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(rng.uniform(0.0, 0.2))
    assert process.poll() is None, "the stage ended before the kill: lengthen TRAIN"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    return step


@pytest.mark.parametrize("stage", [_autoencoder, _ldm], ids=["train_autoencoder", "train_ldm"])
def test_a_killed_training_run_resumes_to_the_same_bytes(stage, images, ldm_inputs, tmp_path, root):
    command = stage(tmp_path, images, ldm_inputs)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run(command(whole), cwd=root, check=True, capture_output=True)
    _kill_after_a_checkpoint(command(killed), killed / "ckpt", random.Random(0), root)
    assert not (killed / "model").exists() and not (killed / "metrics.json").exists()
    subprocess.run(command(killed), cwd=root, check=True, capture_output=True)
    metrics = json.loads((killed / "metrics.json").read_text())
    assert metrics["train"]["resumed_from"] and metrics["train"]["batches"] == TRAIN["steps"]
    assert (killed / "model" / "model.safetensors").read_bytes() == (whole / "model" / "model.safetensors").read_bytes()


def test_a_killed_cache_latents_publishes_nothing_and_the_rerun_writes_the_same_bytes(ldm_inputs, tmp_path, root):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"data": {"resolution": 64, "shard_size": 40},  # as conftest.ldm_inputs
                                      "cache_latents": {"accelerator": "cpu", "devices": 1, "threads": 1,
                                                        "label_maps": False}}))

    def command(out: Path) -> list[str]:
        return [sys.executable, "-m", "stages.cache_latents", "--params", str(params), "--images", str(ldm_inputs / "images"),
                "--pairs", str(ldm_inputs / "pairs"), "--masks", str(ldm_inputs / "masks"),
                "--model", str(ldm_inputs / "models" / "autoencoder"), "--out", str(out / "latents"),
                "--report", str(out / "cache.json")]

    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run(command(whole), cwd=root, check=True, capture_output=True)
    process = subprocess.Popen(command(killed), cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    staging, deadline = killed / ".latents.partial", time.monotonic() + 300
    while not any(staging.rglob("*.tar")):
        assert process.poll() is None and time.monotonic() < deadline, "the stage ended before its first shard"
        time.sleep(0.01)
    time.sleep(random.Random(0).uniform(0.0, 0.1))
    assert process.poll() is None, "the stage ended before the kill"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (killed / "latents").exists() and not (killed / "cache.json").exists()
    subprocess.run(command(killed), cwd=root, check=True, capture_output=True)
    written = {p.relative_to(killed / "latents") for p in (killed / "latents").rglob("*") if p.is_file()}
    assert written == {p.relative_to(whole / "latents") for p in (whole / "latents").rglob("*") if p.is_file()}
    for name in written:
        assert (killed / "latents" / name).read_bytes() == (whole / "latents" / name).read_bytes(), name
    assert not staging.exists()
