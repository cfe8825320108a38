"""Shared test set-up: every tool writes into temporary folders, never into $HOME."""

from __future__ import annotations

import os
import sys
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
    # Subprocesses (dvc running `python -m stages...`) must find this interpreter first.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


@pytest.fixture(scope="session")
def root() -> Path:
    """The project checkout."""
    return ROOT


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors run on one thread: on 2 shared cores, 2 threads made 30 ms steps take seconds."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
