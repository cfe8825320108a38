"""The pipeline around the models: a `dvc repro` with nothing to do, the Prefect flow's overhead over it, the
CLI's start-up, and the peak RSS of cache_latents as the data grows.

Run in the workspace after `dvc repro train_ldm` (what `make bench` does first): the no-op figures are those of
this checkout's DAG, not of a toy. The RSS rows run the download and cache_latents stages as their own processes
(`python -m stages...`, as dvc.yaml does) on 1x and 4x the embedded crops, in a temporary folder, with the
workspace's trained autoencoder; the peak is the largest resident set of the stage's process tree (wait4).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import yaml

from bench.common import ROOT, Goal, NotReady, Row, interleaved

TARGET = "train_ldm"  # the stage `make bench` brings up to date
NOOP_GOAL_S, FLOW_OVERHEAD_GOAL_S, RSS_GOAL = 5.0, 10.0, 1.2
BIN = Path(sys.executable).parent
SERVER_START_S = 120.0


def _run(args: list[str], cwd: Path = ROOT, launcher: tuple[str, ...] = (), **env: str) -> str:
    """Run `args` (through `launcher`, if given) and return its stdout; a failure raises with both streams' tails."""
    result = subprocess.run([*launcher, *args], cwd=cwd, capture_output=True, text=True, env={**_env(), **env})
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return result.stdout


def _env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def _up_to_date() -> None:
    status = subprocess.run([str(BIN / "dvc"), "status", TARGET], cwd=ROOT, capture_output=True, text=True, env=_env())
    if "changed" in status.stdout or status.returncode != 0:
        raise NotReady(f"`dvc status {TARGET}` is not clean; run `dvc repro {TARGET}` (make bench does) first")


@contextlib.contextmanager
def prefect_server() -> Iterator[str]:
    """`prefect server start` on a free loopback port until it answers; its API URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    api = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            try:
                urllib.request.urlopen(f"{api}/health", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"`prefect server start` did not answer at {api} within {SERVER_START_S:g} s") from None
                time.sleep(0.5)
        yield api
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def orchestration_rows(repeats: int) -> list[Row]:
    """No-op `dvc repro` against `dvc --version`; `ldm run` against `dvc repro` (no-op), with Prefect's temporary
    server and against a running one; `ldm --help` against `dvc --help`."""
    _up_to_date()
    dvc, ldm = str(BIN / "dvc"), str(BIN / "ldm")
    run = [ldm, "run", "--target", TARGET, "--no-push", "--no-release"]
    noop = interleaved(lambda: _run([dvc, "repro", TARGET]), lambda: _run([dvc, "--version"]), repeats=repeats)
    flow = interleaved(lambda: _run(run), lambda: _run([dvc, "repro", TARGET]), repeats=repeats)
    with prefect_server() as api:
        served = interleaved(lambda: _run(run, PREFECT_API_URL=api), lambda: _run([dvc, "repro", TARGET]), repeats=repeats)
    helps = interleaved(lambda: _run([ldm, "--help"]), lambda: _run([dvc, "--help"]), repeats=repeats)
    return [
        Row("Pipeline", f"`dvc repro {TARGET}` with nothing changed", "s", noop.ours_s, noop.peer_s,
            "`dvc --version` (DVC's start-up)", noop.ours_s / noop.peer_s, "cost", Goal("ours", "<=", NOOP_GOAL_S),
            "the workspace's DAG up to the LDM (7 stages): DVC hashes every dep and out it lists"),
        Row("Pipeline", f"`ldm run --target {TARGET}` (Prefect) with nothing changed", "s", flow.ours_s, flow.peer_s,
            f"`dvc repro {TARGET}` alone", flow.ours_s / flow.peer_s, "cost",
            Goal("difference", "<=", FLOW_OVERHEAD_GOAL_S),
            "the flow's overhead is the difference: imports, Prefect's temporary API server, `dvc dag`, `dvc status`"),
        Row("Pipeline", f"`ldm run --target {TARGET}` against a running Prefect server", "s", served.ours_s,
            served.peer_s, f"`dvc repro {TARGET}` alone", served.ours_s / served.peer_s, "cost",
            Goal("difference", "<=", FLOW_OVERHEAD_GOAL_S),
            "PREFECT_API_URL of a `prefect server start` (as `ldm serve` deployments run): no temporary server"),
        Row("Pipeline", "`ldm --help` start-up", "s", helps.ours_s, helps.peer_s, "`dvc --help`",
            helps.peer_s / helps.ours_s, "speed-up", None, "a new process each time, as a shell runs it"),
    ]


# A launcher of its own: a child forked from this (large) process would start with this process's peak RSS on
# record (Linux keeps the high-water mark across exec); the launcher's children start from its few MiB.
LAUNCHER = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]);"
            " print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)")


def _peak_rss_mib(args: list[str], cwd: Path) -> float:
    """Run `args`; the peak resident set of its largest process (itself or a waited-for child), MiB."""
    stdout = _run(args, cwd, launcher=(sys.executable, "-c", LAUNCHER))
    return int(stdout.strip().splitlines()[-1]) / 1024  # Linux: KiB


def rss_rows(base_train: int = 300, base_val: int = 60) -> list[Row]:
    """cache_latents' peak RSS at 1x and 4x `base_train` + `base_val` embedded crops (images only)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["cache_latents"].update(pairs=False, masks=False, label_maps=False)
    model = ROOT / "models" / "autoencoder"
    if not (model / "model.safetensors").is_file():
        raise NotReady(f"{model}: no trained autoencoder; run `dvc repro {TARGET}` (make bench does) first")
    peaks, seconds = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for times in (1, 4):
            folder = Path(tmp) / f"x{times}"
            folder.mkdir()
            params["download"]["embedded"].update(train_crops=base_train * times, val_crops=base_val * times)
            (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
            python = [sys.executable, "-m"]
            _run([*python, "stages.download", "--params", "params.yaml", "--out", "images", "--report", "download.json",
                  "--cache", "cache"], cwd=folder)
            start = time.perf_counter()
            peaks[times] = _peak_rss_mib([*python, "stages.cache_latents", "--params", "params.yaml", "--images", "images",
                                          "--pairs", "pairs", "--model", str(model), "--out", "latents", "--report",
                                          "cache_latents.json"], cwd=folder)
            seconds[times] = time.perf_counter() - start
    return [Row("Pipeline", "cache_latents peak RSS, 4x against 1x the data", "MiB", peaks[4], peaks[1],
                f"the same stage on {base_train + base_val} crops", peaks[4] / peaks[1], "growth", Goal("ratio", "<=", RSS_GOAL),
                f"{base_train + base_val} and {4 * (base_train + base_val)} crops of {params['data']['resolution']} px,"
                f" {seconds[1]:.0f} s and {seconds[4]:.0f} s", extra={"peak_rss_mib": peaks, "seconds": seconds})]
