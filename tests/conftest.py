"""Shared test set-up: every tool writes into temporary folders, never into $HOME."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def pytest_configure(config: pytest.Config) -> None:
    """Keep DVC, torch and Hugging Face offline and out of the user's home."""
    cache = ROOT / ".cache"
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    os.environ.setdefault("DVC_SITE_CACHE_DIR", str(cache / "dvc-site"))
    os.environ.setdefault("TORCH_HOME", str(cache / "torch"))
    os.environ.setdefault("HF_HOME", str(cache / "huggingface"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # Prefect: a home in the checkout (a second start is faster), no telemetry, time to start its temporary server.
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")  # `make test` runs 2 (pytest-xdist)
    if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:  # a core each: torch's threads would fight
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        os.environ.setdefault("MKL_NUM_THREADS", "1")
    os.environ.setdefault("PREFECT_HOME", str(cache / f"prefect-tests-{worker}"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    # Subprocesses (dvc running `python -m stages...`) must find this interpreter first.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


# The files that take minutes, longest first (`make test PYTEST_ADDOPTS=--durations=0`). `make test` hands each of
# 2 processes a whole file at a time, in collection order: these go first, so that none is left to run alone at the end.
LONGEST_FIRST = ("test_pipeline_cli.py", "test_flows.py", "test_storage_outage.py", "test_killed_training.py",
                 "test_ddp.py", "test_autoencoder.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keeps its order


@pytest.fixture(scope="session")
def root() -> Path:
    """The project checkout."""
    return ROOT


# What a pipeline workspace holds of the checkout: the DAG, what DVC and git ignore (a user's commits hold no model,
# checkpoint or cache, and `dvc exp run --temp` copies what git holds), the code its stages run, the embedded data.
PIPELINE_FILES = ("dvc.yaml", ".dvcignore", ".gitignore")
PIPELINE_FOLDERS = ("ldm", "stages", "data/source")


def _copy_pipeline(repo: Path) -> None:
    for name in PIPELINE_FILES:
        shutil.copy(ROOT / name, repo / name)
    for name in PIPELINE_FOLDERS:
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))


@pytest.fixture(scope="session")
def copy_pipeline():
    """copy_pipeline(repo): the checkout's pipeline files into `repo`, before its `git init` and `dvc init` (which
    keeps an existing .dvcignore); params.yaml is each test's own."""
    return _copy_pipeline


@pytest.fixture(scope="session")
def one_thread_stages() -> dict[str, int]:
    """Dotted params keys that give every torch stage one thread: `make test` gives each of its 2 processes a core."""
    return {f"{section}.threads": 1 for section in ("train_autoencoder", "cache_latents", "train_ldm", "evaluate",
                                                    "evaluate_inpaint", "evaluate_semantic", "evaluate_layout")}


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors run on one thread: on 2 shared cores, 2 threads made 30 ms steps take seconds."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A real S3 protocol endpoint on loopback (moto's threaded server), as dvc-s3 and s3fs test themselves."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_env(moto_endpoint, monkeypatch, tmp_path) -> str:
    """Fake credentials for moto, no AWS config from the host; the endpoint URL comes back."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN", "LDM_STORE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {"AWS_ACCESS_KEY_ID": "testing-key", "AWS_SECRET_ACCESS_KEY": "testing-secret", "AWS_DEFAULT_REGION": "us-east-1",
                        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
                        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials")}.items():
        monkeypatch.setenv(name, value)
    return moto_endpoint


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect server for the whole session, started only when a test asks for it (18-30 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def _save_autoencoder(folder: Path, preset: str, seed: int = 0) -> Path:
    """An untrained autoencoder written as stage train_autoencoder writes one (weights + config.json)."""
    import json

    import torch
    from safetensors.torch import save_file

    from ldm.autoencoder import build_autoencoder

    torch.manual_seed(seed)
    model = build_autoencoder(preset)
    folder.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"preset": preset, "model": model.config.to_dict()}))
    return folder


@pytest.fixture(scope="session")
def save_autoencoder():
    """save_autoencoder(folder, preset, seed=0): an untrained autoencoder folder for the model stages."""
    return _save_autoencoder


def _embedded_images(out: Path, data: dict, train: int, val: int) -> Path:
    """`out/images`: shards of `train` + `val` crops of the embedded photographs, as stage download writes them."""
    from stages import download
    from stages.params import parse_params

    download.run(parse_params({"data": data, "download": {"embedded": {"train_crops": train, "val_crops": val}}}),
                 download.Paths(out / "images", out / "download.json", out / "cache"))
    return out / "images"


@pytest.fixture(scope="session")
def embedded_images():
    """embedded_images(out, data, train, val): an image shard folder of the embedded crops (stage download)."""
    return _embedded_images


def _record_shards(cache: Path) -> None:
    """Rewrite the sha256 record of a latent cache's stats.json for the shards now in it: a test that rewrites
    shards on purpose (train_ldm refuses shards that differ from the record)."""
    import json

    from ldm.data.shards import sha256_file

    stats = json.loads((cache / "stats.json").read_text())
    stats["shards"] = {p.relative_to(cache).as_posix(): sha256_file(p) for p in sorted(cache.rglob("*.tar"))}
    (cache / "stats.json").write_text(json.dumps(stats))


@pytest.fixture(scope="session")
def record_shards():
    """record_shards(cache): stats.json records the shards the cache folder holds now."""
    return _record_shards


@pytest.fixture(scope="session")
def ldm_inputs(tmp_path_factory) -> Path:
    """64 px embedded crops -> pairs and masks -> an untrained kl-f4-tiny -> the latent cache (what the LDM stages
    read)."""
    from stages import cache_latents, degrade, masks
    from stages.params import parse_params

    data = {"resolution": 64, "shard_size": 40}
    out = tmp_path_factory.mktemp("ldm-inputs")
    _embedded_images(out, data, 48, 16)
    degrade.run(parse_params({"data": data, "degrade": {"workers": 1, "grid_pairs": 2}}),
                degrade.Paths(out / "images", out / "pairs", out / "degrade.json", out / "degrade.png"))
    masks.run(parse_params({"masks": {"grid_images": 2}}),
              masks.Paths(out / "images", out / "masks", out / "masks.json", out / "masks.png"))
    _save_autoencoder(out / "models" / "autoencoder", "kl-f4-tiny")
    cache_latents.run(parse_params({"data": data, "cache_latents": {"accelerator": "cpu", "devices": 1, "threads": 1,
                                                                      "label_maps": False}}),
                      cache_latents.Paths(out / "images", out / "pairs", out / "models" / "autoencoder", out / "latents",
                                          out / "cache.json", out / "masks"))
    return out
