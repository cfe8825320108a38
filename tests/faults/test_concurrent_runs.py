"""Faults: two pipeline runs on one workspace, `ldm run` beside a `dvc repro` started by hand.

DVC's own lock (.dvc/tmp/lock) is the arbiter: whichever of the two asks while the other runs a
stage is refused with a message that says so (the flow after its retries, as a busy lock is
transient); the run that holds the lock finishes untouched, and the next run finds nothing to do.
The stages are small commands in a DVC repository of their own: what is under test is the locking
between the two orchestrators, not the stages (the pipeline's stages write atomically: see
test_killed_training.py).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from flows.cli import main

pytestmark = pytest.mark.slow

# The first stage holds DVC's locks from writing `started` until the test writes `go` (two minutes at most).
HOLD = """
import pathlib, time
pathlib.Path("started").touch()
deadline = time.monotonic() + 120
while not pathlib.Path("go").exists() and time.monotonic() < deadline:
    time.sleep(0.05)
pathlib.Path("first.txt").write_text("first")
"""
STAGES = {"first": {"cmd": "python hold.py", "deps": ["hold.py"], "outs": ["first.txt"]},
          "second": {"cmd": "cp first.txt second.txt", "deps": ["first.txt"], "outs": ["second.txt"]}}


def _dvc(*args: str) -> list[str]:
    return [sys.executable, "-m", "dvc", *args]


@pytest.fixture
def repo(tmp_path) -> Path:
    """A DVC repository with two stages; the flow retries a busy lock once, after a second."""
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(_dvc("init", "--no-scm", "-q"), cwd=repo, check=True, timeout=120)
    (repo / "hold.py").write_text(HOLD)
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": STAGES}, sort_keys=False))
    (repo / "params.yaml").write_text(yaml.safe_dump({"orchestrate": {"retries": 1, "retry_delay_s": 1.0}}))
    return repo


def _wait_for(path: Path, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def _up_to_date(repo: Path) -> None:
    status = subprocess.run(_dvc("status"), cwd=repo, capture_output=True, text=True, timeout=120)
    assert status.returncode == 0 and "up to date" in status.stdout, status.stdout
    assert (repo / "second.txt").read_text() == "first"


def test_ldm_run_beside_dvc_repro_is_refused_and_the_repro_finishes_untouched(prefect_harness, repo, capsys):
    by_hand = subprocess.Popen(_dvc("repro"), cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for(repo / "started")
    code = main(["run", "--workdir", str(repo), "--no-push", "--no-release"])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1, errors
    assert "dvc repro -s first" in errors[0] and "another DVC command holds this workspace" in errors[0], errors[0]
    (repo / "go").touch()
    output, _ = by_hand.communicate(timeout=300)
    assert by_hand.returncode == 0, output
    _up_to_date(repo)
    assert main(["run", "--workdir", str(repo), "--no-push", "--no-release"]) == 0
    assert '"first": "skipped (unchanged)"' in capsys.readouterr().out


def test_dvc_repro_beside_ldm_run_is_refused_and_the_run_finishes_untouched(prefect_harness, repo, capsys):
    codes: list[int] = []
    flow = threading.Thread(target=lambda: codes.append(main(["run", "--workdir", str(repo), "--no-push", "--no-release"])))
    flow.start()
    _wait_for(repo / "started")
    by_hand = subprocess.run(_dvc("repro"), cwd=repo, capture_output=True, text=True, timeout=300)
    (repo / "go").touch()
    flow.join(300)
    assert by_hand.returncode != 0 and "is busy, it is being blocked by" in by_hand.stderr  # DVC's own refusal
    assert codes == [0]
    _up_to_date(repo)
