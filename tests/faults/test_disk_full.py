"""Faults: the disk fills up while a stage writes shards or checkpoints.

A full disk is made with a file-size limit on the stage's process (RLIMIT_FSIZE, SIGXFSZ ignored,
so a write past the limit fails with EFBIG as a full disk fails with ENOSPC). The stage must end
with one line and exit 2, publish no output, and succeed when run again without the limit, with
the bytes of a run that never hit it.
"""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

DATA = {"resolution": 32, "shard_size": 8}


def _limit(size: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    return apply


def _run(command: list[str], cwd: Path, limit: int | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600,
                          preexec_fn=_limit(limit) if limit else None)


def _error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def images(tmp_path_factory, embedded_images) -> Path:
    return embedded_images(tmp_path_factory.mktemp("full-images"), DATA, 16, 8)


def test_degrade_on_a_full_disk_publishes_nothing_and_succeeds_once_there_is_space(images, tmp_path, root):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"data": DATA, "degrade": {"workers": 1, "grid_pairs": 2}}))

    def command(out: Path) -> list[str]:
        return [sys.executable, "-m", "stages.degrade", "--params", str(tmp_path / "params.yaml"), "--images", str(images),
                "--out", str(out / "pairs"), "--report", str(out / "degrade.json"), "--grid", str(out / "degrade.png")]

    full = _run(command(tmp_path / "full"), root, limit=16_000)  # a pair shard is larger
    errors = _error_lines(full)
    assert full.returncode == 2 and len(errors) == 1 and "File too large" in errors[0], full.stderr[-2000:]
    assert not (tmp_path / "full" / "pairs").exists() and not (tmp_path / "full" / "degrade.json").exists()
    assert _run(command(tmp_path / "full"), root).returncode == 0
    assert _run(command(tmp_path / "whole"), root).returncode == 0
    for shard in sorted((tmp_path / "whole" / "pairs").iterdir()):
        assert (tmp_path / "full" / "pairs" / shard.name).read_bytes() == shard.read_bytes()


def test_a_checkpoint_on_a_full_disk_is_one_line_and_the_rerun_trains(images, tmp_path, root):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"data": DATA, "autoencoder": {"preset": "kl-f4-tiny"}, "train_autoencoder": {
        "steps": 4, "batch_size": 4, "val_every": 4, "checkpoint_every": 2, "threads": 1, "grid_images": 2}}))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "stages.train_autoencoder", "--params", str(params), "--images", str(images),
               "--model", str(out / "model"), "--checkpoints", str(out / "ckpt"), "--metrics", str(out / "metrics.json"),
               "--curves", str(out / "loss.csv"), "--grid", str(out / "grid.png")]
    full = _run(command, root, limit=1_000_000)  # a checkpoint of kl-f4-tiny is about 9 MB
    errors = _error_lines(full)
    assert full.returncode == 2 and len(errors) == 1, full.stderr[-2000:]
    assert errors[0].startswith("error: the file size limit is reached") and "free space and run the command again" in errors[0]
    assert not (out / "model").exists() and not (out / "metrics.json").exists()
    assert not list((out / "ckpt").glob("*.ckpt"))  # no checkpoint that looks complete
    rerun = _run(command, root)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert (out / "model" / "model.safetensors").is_file()


def test_a_latent_cache_on_a_full_disk_publishes_nothing_and_the_rerun_writes_the_same_bytes(ldm_inputs, tmp_path, root):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({
        "data": {"resolution": 64, "shard_size": 40},  # as conftest.ldm_inputs
        "cache_latents": {"accelerator": "cpu", "devices": 1, "threads": 1, "label_maps": False}}))

    def command(out: Path) -> list[str]:
        return [sys.executable, "-m", "stages.cache_latents", "--params", str(tmp_path / "params.yaml"),
                "--images", str(ldm_inputs / "images"), "--pairs", str(ldm_inputs / "pairs"), "--masks", str(ldm_inputs / "masks"),
                "--model", str(ldm_inputs / "models" / "autoencoder"), "--out", str(out / "latents"),
                "--report", str(out / "cache.json")]

    full = _run(command(tmp_path / "full"), root, limit=20_000)  # a latent shard of 40 samples is larger
    errors = _error_lines(full)
    assert full.returncode == 2 and len(errors) == 1 and "the file size limit is reached" in errors[0], full.stderr[-2000:]
    assert not (tmp_path / "full" / "latents").exists() and not (tmp_path / "full" / "cache.json").exists()
    assert [p.name for p in (tmp_path / "full").iterdir()] == []  # nor its hidden partial folder
    assert _run(command(tmp_path / "full"), root).returncode == 0
    for shard in sorted((ldm_inputs / "latents").rglob("*.tar")):
        assert (tmp_path / "full" / "latents" / shard.relative_to(ldm_inputs / "latents")).read_bytes() == shard.read_bytes()


def test_a_pull_on_a_full_disk_leaves_nothing_and_the_rerun_completes(tmp_path, root):
    bundle = tmp_path / "model"
    bundle.mkdir()
    (bundle / "model.safetensors").write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    (bundle / "config.json").write_text("{}")
    store = tmp_path / "store"
    ldm = str(Path(sys.executable).parent / "ldm")
    assert _run([ldm, "publish", str(bundle), "--name", "m", "--store", str(store)], tmp_path).returncode == 0
    pull = [ldm, "pull", "m", "-o", str(tmp_path / "serving" / "m"), "--store", str(store)]
    full = _run(pull, tmp_path, limit=100_000)
    errors = _error_lines(full)
    assert full.returncode == 2 and len(errors) == 1 and "the file size limit is reached" in errors[0], full.stderr[-2000:]
    assert list((tmp_path / "serving").iterdir()) == []  # no folder, not even the hidden partial one
    assert _run(pull, tmp_path).returncode == 0
    assert (tmp_path / "serving" / "m" / "model.safetensors").read_bytes() == (bundle / "model.safetensors").read_bytes()
