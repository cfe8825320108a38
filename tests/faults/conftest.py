"""What the fault tests share: an S3 endpoint on loopback that can be stopped and started again."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

START_TIMEOUT_S = 60.0
WATCH_S = 300.0  # the longest an outage waits for its trigger


@dataclass
class StoppableEndpoint:
    """moto's S3 server in a process of its own: `pause` stops it (SIGSTOP) with its data kept, `resume` goes on."""

    url: str
    process: subprocess.Popen

    def pause(self) -> None:
        """The endpoint stops answering: connections still open (the kernel queues them), no byte comes back."""
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)


class Outage:
    """Stops the endpoint once, remembering when."""

    def __init__(self, endpoint: StoppableEndpoint) -> None:
        self.endpoint, self.at = endpoint, None

    def begin(self) -> None:
        if self.at is None:
            self.endpoint.pause()
            self.at = time.monotonic()

    def after(self, ready: Callable[[], bool]) -> threading.Thread:
        """A thread that begins the outage once `ready()` holds (polled)."""

        def watch() -> None:
            deadline = time.monotonic() + WATCH_S
            while not ready() and time.monotonic() < deadline:
                time.sleep(0.05)
            self.begin()

        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        return thread


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def stoppable_s3(monkeypatch, tmp_path) -> Iterator[StoppableEndpoint]:
    """A fresh moto server in a subprocess, fake credentials, no AWS configuration of the host."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN", "LDM_STORE", "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {"AWS_ACCESS_KEY_ID": "testing-key", "AWS_SECRET_ACCESS_KEY": "testing-secret",
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
                        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials")}.items():
        monkeypatch.setenv(name, value)
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"moto's server did not start on {url}")
            time.sleep(0.2)
    endpoint = StoppableEndpoint(url, process)
    try:
        yield endpoint
    finally:
        endpoint.resume()
        process.kill()
        process.wait()


@pytest.fixture
def outage(stoppable_s3) -> Outage:
    """The outage of `stoppable_s3`: `begin()` once, or `after(condition)` in a thread."""
    return Outage(stoppable_s3)
