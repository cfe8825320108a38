"""Faults: a crafted pickle where a stage resumes from, and model folders that only load safetensors.

The payload of every crafted file would create a marker file when unpickled; each test checks that
the marker never appears and that the refusal names the file.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest
import torch

from ldm.autoencoder import load_autoencoder
from ldm.errors import UserError
from ldm.trainer import UntrustedCheckpoint
from stages.params import parse_params
from stages.train_autoencoder import Paths, run

DATA = {"resolution": 32, "shard_size": 30}
SHORT = {"steps": 2, "batch_size": 4, "val_every": 2, "checkpoint_every": 2, "threads": 1, "grid_images": 2}


class Payload:
    """Unpickling this runs `os.system("touch <marker>")`: what a crafted checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def images(tmp_path_factory, embedded_images) -> Path:
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    return embedded_images(tmp_path_factory.mktemp("untrusted-images"), DATA, 8, 4)


def _run(images: Path, out: Path) -> dict:
    params = parse_params({"data": DATA, "autoencoder": {"preset": "kl-f4-tiny"}, "train_autoencoder": SHORT})
    return run(params, Paths(images, out / "model", out / "ckpt", out / "metrics.json", out / "loss.csv", out / "grid.png"))


def test_a_crafted_last_ckpt_is_refused_and_runs_nothing(images, tmp_path):
    _run(images, tmp_path)
    last, marker = tmp_path / "ckpt" / "last.ckpt", tmp_path / "pwned"
    real = torch.load(last, weights_only=True)  # the pipeline's own checkpoint loads weights-only
    torch.save({**real, "callbacks": Payload(marker)}, last)
    with pytest.raises(UntrustedCheckpoint, match=rf"{last}: refused, its pickle holds more than tensors") as refused:
        _run(images, tmp_path)  # the same settings: the stage resumes from last.ckpt
    assert "system" in str(refused.value) and "\n" not in str(refused.value)  # the global it names, on one line
    assert not marker.exists()
    assert isinstance(UntrustedCheckpoint("x"), UserError)  # one line and exit 2 at the command line


def test_a_model_folder_loads_only_its_safetensors(images, tmp_path):
    _run(images, tmp_path)
    model, marker = tmp_path / "model", tmp_path / "pwned"
    weights = next(model.glob("*.safetensors"))
    shutil.move(weights, tmp_path / "kept.safetensors")
    torch.save(Payload(marker), model / "model.ckpt")  # a pickle beside the config, where the weights were
    torch.save(Payload(marker), model / "model.bin")
    with pytest.raises(UserError, match=r"model\.safetensors"):
        load_autoencoder(model)
    assert not marker.exists()
