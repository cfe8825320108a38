"""Faults: the S3 endpoint stops in the middle of a transfer.

moto's server runs in a process of its own and gets SIGSTOP once a transfer is under way: it keeps
its connections and its data but answers nothing, as a hung or partitioned store does. Every client
must give up after the bounded retries and timeouts of `storage.s3` with one line, leave nothing
that looks complete (no release, no pulled folder, no DVC object of the cut transfer), and the same
command must complete once the endpoint answers again, with no manual cleanup.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import boto3
import numpy as np
import pytest
import yaml

from flows import dvc
from ldm.data.remote import configure, publish
from ldm.latents.stats import STATS
from ldm.storage.settings import S3Settings

pytestmark = pytest.mark.slow

# Two attempts, 1 s timeouts: the outage must end each client within GIVE_UP_S, not hang it.
FAST = {"max_attempts": 2, "connect_timeout_s": 1.0, "read_timeout_s": 1.0}
GIVE_UP_S = 60.0
PUSH_TIMEOUT_S = 20.0  # orchestrate.push_timeout_s in this test
FILES, FILE_MB = 12, 2  # enough transfer left after the first object that the stop lands mid-way


def _bundle(folder: Path) -> dict[str, bytes]:
    """FILES files of seeded random bytes; their contents by name."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    files = {f"part-{index:02d}.bin": rng.bytes(FILE_MB << 20) for index in range(FILES)}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return files


def _params(tmp_path: Path, endpoint: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"storage": {"s3": {"endpoint_url": endpoint, **FAST}}}))
    return path


def _ldm(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "ldm"), *args]


def _run(command: list[str], cwd: Path, outage,  # noqa: ANN001 - conftest.Outage
         on_line: Callable[[str], bool] = lambda _: False,
         ) -> tuple[int, list[str], float]:
    """Run `command`, begin the outage at the first output line `on_line` accepts (or when another trigger does);
    (exit code, output lines, seconds from the outage to the exit)."""
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watchdog = threading.Timer(GIVE_UP_S * 10, process.kill)
    watchdog.start()
    lines = []
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line.rstrip())
        if on_line(line):
            outage.begin()
    code = process.wait()
    watchdog.cancel()
    assert outage.at is not None, "the command ended before the endpoint was stopped:\n" + "\n".join(lines)
    return code, lines, time.monotonic() - outage.at


def _errors(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("error:")]


def _check_one_line_within_bounds(code: int, lines: list[str], seconds: float, endpoint: str) -> None:
    errors = _errors(lines)
    assert code == 2 and len(errors) == 1 and not any("Traceback" in line for line in lines), "\n".join(lines[-40:])
    assert f"cannot reach {endpoint}" in errors[0], errors[0]
    assert seconds < GIVE_UP_S


@pytest.fixture
def store(stoppable_s3, tmp_path) -> tuple[Path, str]:
    """A params file pointing at the endpoint and a release store in a versioned bucket there."""
    params = _params(tmp_path, stoppable_s3.url)
    url = "s3://releases/models"
    result = subprocess.run(_ldm("store", "init", "--store", url, "--params", str(params)), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return params, url


def test_a_publish_cut_by_the_outage_leaves_no_release_and_the_next_one_completes(stoppable_s3, outage, store, tmp_path):
    params, url = store
    files = _bundle(tmp_path / "model")
    publish = _ldm("publish", str(tmp_path / "model"), "--name", "m", "--store", url, "--params", str(params))
    code, lines, seconds = _run(publish, tmp_path, outage, lambda line: "uploading" in line)
    _check_one_line_within_bounds(code, lines, seconds, stoppable_s3.url)
    stoppable_s3.resume()
    listed = subprocess.run(_ldm("releases", "m", "--store", url, "--params", str(params)), capture_output=True, text=True,
                            timeout=120)
    assert listed.returncode == 0 and "no releases of m" in listed.stdout  # the cut publish is not visible
    again = subprocess.run(publish, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "version 1" in again.stdout, again.stderr
    pulled = subprocess.run(_ldm("pull", "m", "-o", str(tmp_path / "pulled"), "--store", url, "--params", str(params)),
                            capture_output=True, text=True, timeout=300)
    assert pulled.returncode == 0, pulled.stderr
    assert {name: (tmp_path / "pulled" / name).read_bytes() for name in files} == files


def test_a_pull_cut_by_the_outage_leaves_nothing_and_the_next_one_completes(stoppable_s3, outage, store, tmp_path):
    params, url = store
    files = _bundle(tmp_path / "model")
    published = subprocess.run(_ldm("publish", str(tmp_path / "model"), "--name", "m", "--store", url, "--params", str(params)),
                               capture_output=True, text=True, timeout=300)
    assert published.returncode == 0, published.stderr
    dest = tmp_path / "serving" / "m"
    pull = _ldm("pull", "m", "-o", str(dest), "--store", url, "--params", str(params))
    code, lines, seconds = _run(pull, tmp_path, outage, lambda line: "downloading" in line)
    _check_one_line_within_bounds(code, lines, seconds, stoppable_s3.url)
    assert list((tmp_path / "serving").iterdir()) == []  # no folder, not even the hidden partial one
    stoppable_s3.resume()
    again = subprocess.run(pull, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert {name: (dest / name).read_bytes() for name in files} == files


def test_a_dvc_push_cut_by_the_outage_is_stopped_retried_and_completes(stoppable_s3, outage, tmp_path):
    """The flow's push (flows.pipeline.push_outputs): a write stalled by the endpoint is past every S3 timeout
    (the kernel keeps accepting bytes), so the push's own timeout stops it, as a transient failure."""
    repo = tmp_path / "repo"
    files = _bundle(repo / "data")
    settings = S3Settings(endpoint_url=stoppable_s3.url, **FAST)
    for args in (("git", "init", "-q"), tuple(dvc.dvc("init", "-q")), tuple(dvc.dvc("add", "-q", "data"))):
        subprocess.run(args, cwd=repo, check=True, capture_output=True, timeout=300)
    client = boto3.client("s3", endpoint_url=stoppable_s3.url)
    client.create_bucket(Bucket="remote")
    push, env = dvc.dvc("push", "--remote", dvc.configure_remote(repo, "s3://remote/dvc", settings)), dvc.subprocess_env(settings)

    watcher = outage.after(lambda: bool(client.list_objects_v2(Bucket="remote", Prefix="dvc/").get("KeyCount")))
    with pytest.raises(dvc.CommandFailed, match="ran out of its 20 s timeout") as failed:  # dvc prints no line per file
        dvc.check(dvc.run_command(push, repo, PUSH_TIMEOUT_S, env, retry_on_timeout=True), "dvc push")
    watcher.join()
    assert outage.at is not None, "dvc push ended before the endpoint was stopped"
    assert failed.value.transient and time.monotonic() - outage.at < PUSH_TIMEOUT_S + GIVE_UP_S
    stoppable_s3.resume()
    dvc.check(dvc.run_command(push, repo, 300, env), "dvc push")
    shutil.rmtree(repo / ".dvc" / "cache")
    shutil.rmtree(repo / "data")
    dvc.check(dvc.run_command(dvc.dvc("pull"), repo, 300, env), "dvc pull")
    assert {name: (repo / "data" / name).read_bytes() for name in files} == files


TRAIN = {"steps": 16, "batch_size": 4, "val_every": 16, "checkpoint_every": 2, "threads": 1, "shuffle_buffer": 20,
         "loader": {"num_workers": 1}}  # the shards stream in a DataLoader worker, as on a training node


def test_a_training_run_streaming_from_the_stopped_endpoint_ends_in_one_line_and_resumes(stoppable_s3, outage, ldm_inputs,
                                                                                        tmp_path, root):
    settings = S3Settings(endpoint_url=stoppable_s3.url, **FAST)
    boto3.client("s3", endpoint_url=stoppable_s3.url).create_bucket(Bucket="shards")
    shutil.copytree(ldm_inputs / "latents", tmp_path / "staging")
    configure(settings)
    try:
        publish(tmp_path / "staging", "s3://shards/latents", STATS)
    finally:
        configure(S3Settings())
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"data": {"resolution": 64, "shard_size": 40},  # as conftest.ldm_inputs
                                      "storage": {"s3": {"endpoint_url": stoppable_s3.url, **FAST}}, "train_ldm": TRAIN}))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "stages.train_ldm", "--section", "train_ldm", "--params", str(params),
               "--latents", "s3://shards/latents", "--autoencoder", str(ldm_inputs / "models" / "autoencoder"),
               "--model", str(out / "model"), "--checkpoints", str(out / "ckpt"), "--metrics", str(out / "metrics.json"),
               "--curves", str(out / "loss.csv")]

    outage.after(lambda: (out / "ckpt" / "last.ckpt").exists())
    code, lines, seconds = _run(command, root, outage)
    _check_one_line_within_bounds(code, lines, seconds, stoppable_s3.url)
    assert not (out / "model").exists() and not (out / "metrics.json").exists()
    stoppable_s3.resume()
    again = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train"]["resumed_from"] and metrics["train"]["batches"] == TRAIN["steps"]
