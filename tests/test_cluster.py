"""The data stages on a Dask cluster (`cluster.address`): the same bytes as the local process pool."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ldm.errors import InvalidInput
from stages import degrade, download
from stages.params import parse_params

distributed = pytest.importorskip("distributed")
DATA = {"resolution": 32, "shard_size": 8}


@pytest.fixture(scope="module")
def local_cluster():
    """Two worker processes, one thread each, as `LocalCluster` starts them."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        yield cluster.scheduler_address


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for label in ("cats", "dogs"):
        (root / label).mkdir()
        for index in range(12):
            Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(root / label / f"{index}.png")
    (root / "dogs" / "broken.png").write_bytes(b"not an image")  # skipped with its reason, wherever it runs
    return root


def _download(photos: Path, out: Path, address: str = "", workers: int = 1) -> dict:
    params = parse_params({"data": DATA, "cluster": {"address": address},
                           "download": {"source": "folder", "workers": workers, "folder": {"path": str(photos)}}})
    return download.run(params, download.Paths(out / "images", out / "download.json", out / "cache"))


def _degrade(images: Path, out: Path, address: str = "", workers: int = 1) -> dict:
    params = parse_params({"data": DATA, "cluster": {"address": address},
                           "degrade": {"workers": workers, "grid_pairs": 4}})
    return degrade.run(params, degrade.Paths(images, out / "pairs", out / "degrade.json", out / "degrade.png"))


def _tar_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.tar"))}


def test_download_and_degrade_on_a_local_cluster_write_the_serial_bytes(photos, tmp_path, local_cluster):
    serial = _download(photos, tmp_path / "serial")
    dask = _download(photos, tmp_path / "dask", local_cluster)
    assert serial["skipped"] == dask["skipped"] and len(serial["skipped"]) == 1
    assert _tar_bytes(tmp_path / "serial" / "images") == _tar_bytes(tmp_path / "dask" / "images")
    pairs_serial = _degrade(tmp_path / "serial" / "images", tmp_path / "serial")
    pairs_dask = _degrade(tmp_path / "serial" / "images", tmp_path / "dask", local_cluster)
    assert pairs_serial["shards"] == pairs_dask["shards"] and len(pairs_serial["shards"]) >= 3
    assert (pairs_dask["tasks"]["where"], pairs_dask["tasks"]["total"]) == (f"dask {local_cluster}", len(pairs_dask["shards"]))
    assert (dask["tasks"]["where"], serial["tasks"]["where"], serial["tasks"]["retried"]) == (f"dask {local_cluster}", "local", [])
    assert _tar_bytes(tmp_path / "serial" / "pairs") == _tar_bytes(tmp_path / "dask" / "pairs")


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.is_file():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the Dask scheduler did not write {path} (exit {process.poll()})")
        time.sleep(0.2)


def test_degrade_on_a_scheduler_and_workers_started_as_processes(photos, tmp_path):
    """`dask scheduler` and `dask worker` as a user starts them; the stage finds them by the scheduler file."""
    dask_cli = shutil.which("dask", path=str(Path(sys.executable).parent))
    scheduler_file = tmp_path / "scheduler.json"
    common = ["--no-dashboard"]
    scheduler = subprocess.Popen([dask_cli, "scheduler", "--scheduler-file", str(scheduler_file), "--port", "0",
                                  *common], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers = None
    try:
        _wait_for(scheduler_file, scheduler)
        workers = subprocess.Popen([dask_cli, "worker", "--scheduler-file", str(scheduler_file), "--nworkers", "2",
                                    "--nthreads", "1", *common], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _download(photos, tmp_path / "serial")
        serial = _degrade(tmp_path / "serial" / "images", tmp_path / "serial", workers=2)
        remote = _degrade(tmp_path / "serial" / "images", tmp_path / "remote", str(scheduler_file))
        assert serial["shards"] == remote["shards"]
        assert _tar_bytes(tmp_path / "serial" / "pairs") == _tar_bytes(tmp_path / "remote" / "pairs")
    finally:
        for process in (workers, scheduler):
            if process is not None:
                process.terminate()
                process.wait(30)


def test_an_address_with_no_scheduler_is_one_clear_error(tmp_path, photos):
    params = parse_params({"data": DATA, "cluster": {"address": "tcp://127.0.0.1:9", "timeout_s": 2},
                           "download": {"source": "folder", "folder": {"path": str(photos)}}})
    with pytest.raises(InvalidInput, match=r"cluster.address tcp://127.0.0.1:9: no Dask scheduler answered in 2 s"):
        download.run(params, download.Paths(tmp_path / "images", tmp_path / "download.json", tmp_path / "cache"))
    assert not (tmp_path / "images").exists()
