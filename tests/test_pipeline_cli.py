"""The DVC pipeline for real: `dvc repro` in a temporary git + DVC repository, then every documented command."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from ldm.data.layouts import Box, Layout, save_layouts
from stages.params import parse_params

pytestmark = pytest.mark.slow


def _sh(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def repo(tmp_path_factory, root, copy_pipeline, one_thread_stages) -> Path:
    """A copy of the project's pipeline files in a fresh git + DVC repository, reproduced once."""
    repo = tmp_path_factory.mktemp("pipeline")
    copy_pipeline(repo)
    (repo / "params.yaml").write_text(short_params((root / "params.yaml").read_text(), one_thread_stages))
    _sh("git", "init", "-q", cwd=repo)
    _sh("dvc", "init", "-q", cwd=repo)
    _sh("dvc", "repro", cwd=repo, timeout=REPRO_TIMEOUT_S)
    return repo


# Every branch of the DAG, on 2 shared cores: the whole `dvc repro` (the fixture, the docs' `ldm run` after an edit
# to storage params) may take longer than one command should.
REPRO_TIMEOUT_S = 1800


# The embedded default with a quarter of its crops (in 3 train shards, as many as the default has: docs/scaling.md
# splits them over 2 processes), training and sampling cut short: the DAG and its files, not the model quality.
# train_ldm keeps its preset's batch (32) and 20 steps: docs/scaling.md halves the batch over 2 processes and compares
# the validation losses; the other models take half as many.
STEPS = {"train_autoencoder": 16, "train_ldm": 20, "train_sr": 10, "train_inpaint": 10, "train_semantic": 10,
         "train_layout": 10}
CROPS = {"train": 300, "val": 60}
SHORT = {"download.embedded.train_crops": CROPS["train"], "download.embedded.val_crops": CROPS["val"], "data.shard_size": 100,
         "train_autoencoder.recipe.decay_steps": STEPS["train_autoencoder"], "evaluate.samples": 8, "evaluate.sampling.steps": 5,
         "evaluate.sr_samples": 4, "evaluate.sr_sampling.steps": 5, "evaluate.feature_extractor": "random-conv",
         "train_sr.batch_size": 16, "train_inpaint.batch_size": 16, "evaluate_semantic.sampling.steps": 5,
         "evaluate_inpaint.samples": 4, "evaluate_inpaint.sampling.steps": 5,
         "evaluate_inpaint.feature_extractor": "random-conv", "evaluate_inpaint.lpips_net": "random-vgg16",
         "evaluate_layout.layouts": 2, "evaluate_layout.seeds": 2, "evaluate_layout.sampling.steps": 5,
         **{f"{section}.{key}": steps for section, steps in STEPS.items()
            for key in ("steps", "val_every", "checkpoint_every")}}


def set_param(params: dict, dotted: str, value) -> None:
    """params[a][b][c] = value for "a.b.c" (sections made as needed; `short_params` validates the result)."""
    *parents, key = dotted.split(".")
    for part in parents:
        params = params.setdefault(part, {})
    params[key] = value


def short_params(text: str, extra: dict) -> str:
    """params.yaml with the training stages shortened (and `extra`); a renamed key fails validation here."""
    params = yaml.safe_load(text)
    for dotted, value in {**SHORT, **extra}.items():
        set_param(params, dotted, value)
    parse_params(params)
    return yaml.safe_dump(params, sort_keys=False)


def _edit(repo: Path, dotted: str, value) -> str:
    """Change one param of the repo's params.yaml; the old text comes back for restoring."""
    old = (repo / "params.yaml").read_text()
    params = yaml.safe_load(old)
    set_param(params, dotted, value)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return old


def test_repro_writes_shards_and_report(repo):
    report = json.loads((repo / "reports" / "download.json").read_text())
    assert report["counts"] == CROPS
    shards = sorted(p.name for p in (repo / "data" / "images").glob("*.tar"))
    assert shards == sorted(report["shards"])
    assert report["lineage"]["params"]["data"]["resolution"] == 64
    pairs = json.loads((repo / "reports" / "degrade.json").read_text())
    assert pairs["counts"] == report["counts"]
    assert (repo / "reports" / "degrade.png").stat().st_size > 0
    masks = json.loads((repo / "reports" / "masks.json").read_text())
    assert masks["counts"] == report["counts"] and sorted(masks["shards"]) == shards
    assert (repo / "reports" / "masks.png").stat().st_size > 0
    label_maps = json.loads((repo / "reports" / "label_maps.json").read_text())
    assert label_maps["counts"] == report["counts"] and sorted(label_maps["shards"]) == shards
    autoencoder = json.loads((repo / "metrics" / "autoencoder.json").read_text())
    assert autoencoder["train"]["batches"] == STEPS["train_autoencoder"]
    stats = json.loads((repo / "data" / "latents" / "stats.json").read_text())
    assert stats["counts"]["train"] == report["counts"]["train"] and stats["counts"]["pairs_val"] == report["counts"]["val"]
    assert abs(stats["scaled_std"] - 1.0) <= 0.02 and stats["first_batch"]["std"] > 0
    for name, section in (("ldm", "train_ldm"), ("ldm_sr", "train_sr")):
        config = json.loads((repo / "models" / name / "config.json").read_text())
        assert config["model"]["scale_factor"] == stats["scale_factor"]
        assert json.loads((repo / "metrics" / f"{name}.json").read_text())["train"]["batches"] == STEPS[section]
    evaluation = json.loads((repo / "metrics" / "evaluate.json").read_text())
    assert evaluation["ldm"]["samples"] == 8 and "fid" in evaluation["ldm"] and "psnr" in evaluation["sr"]
    assert (repo / "reports" / "evaluate" / "samples.png").stat().st_size > 0
    semantic = json.loads((repo / "metrics" / "evaluate_semantic.json").read_text())
    assert semantic["sizes"]["2x"]["size"] == [128, 128] and (repo / "reports" / "evaluate_semantic" / "semantic.png").is_file()
    for task in ("inpaint", "layout"):
        assert json.loads((repo / "metrics" / f"ldm_{task}.json").read_text())["train"]["batches"] == STEPS[f"train_{task}"]
        assert (repo / "reports" / f"evaluate_{task}" / f"{task}.png").is_file()
    inpainting = json.loads((repo / "metrics" / "evaluate_inpaint.json").read_text())
    assert set(inpainting["ldm"]) >= {"fid", "lpips"} and set(inpainting["blur_fill"]) >= {"fid", "lpips"}


def test_status_is_clean_and_a_second_repro_skips(repo):
    status = _sh("dvc", "status", "--json", cwd=repo)
    assert json.loads(status.stdout) == {}
    # Python's bytecode of a module no stage had imported (`ldm sample`, a test): no stage goes stale
    cached = repo / "ldm" / "storage" / "__pycache__" / "unimported.cpython-311.pyc"
    cached.parent.mkdir(exist_ok=True)
    cached.write_bytes(b"bytecode")
    assert json.loads(_sh("dvc", "status", "--json", cwd=repo).stdout) == {}
    cached.unlink()
    again = _sh("dvc", "repro", cwd=repo)
    assert "didn't change, skipping" in again.stdout


def test_metrics_show_reads_the_report(repo):
    shown = _sh("dvc", "metrics", "show", "--json", cwd=repo)
    metrics = json.loads(shown.stdout)
    assert "reports/download.json" in json.dumps(metrics)


def test_an_ldm_param_does_not_rerun_the_cache(repo):
    params = _edit(repo, "train_ldm.recipe.lr", 2.0e-3)
    try:
        stale = json.loads(_sh("dvc", "status", "--json", cwd=repo).stdout)
        # the other LDM sections inherit what they do not set
        assert set(stale) == {"train_ldm", "train_sr", "train_inpaint", "train_semantic", "train_layout"}
    finally:
        (repo / "params.yaml").write_text(params)


# Every stage but the autoencoder's and the shard writers' builds or samples an LDM (the UNet).
_STAGES = set(yaml.safe_load((Path(__file__).resolve().parent.parent / "dvc.yaml").read_text())["stages"])
_LDM_STAGES = _STAGES - {"download", "degrade", "masks", "label_maps", "train_autoencoder", "cache_latents"}


@pytest.mark.parametrize("module,stale", [
    ("ldm/data/schema.py", _STAGES),
    ("stages/params/base.py", _STAGES),
    ("ldm/latent_diffusion/unet.py", _LDM_STAGES),
])
def test_an_edit_to_code_a_stage_runs_makes_it_stale(repo, module, stale):
    path = repo / module
    old = path.read_text()
    path.write_text(old + "\n# an edit\n")
    try:
        assert set(json.loads(_sh("dvc", "status", "--json", cwd=repo).stdout)) == stale
    finally:
        path.write_text(old)


def test_an_unrelated_param_does_not_rerun_download(repo):
    params = _edit(repo, "degrade.grid_pairs", 8)
    try:
        stale = json.loads(_sh("dvc", "status", "--json", cwd=repo).stdout)
        assert set(stale) == {"degrade"}
        rerun = _sh("dvc", "repro", "download", cwd=repo)
        assert "Stage 'download' didn't change, skipping" in rerun.stdout
    finally:
        (repo / "params.yaml").write_text(params)


def test_a_changed_download_param_reruns_with_new_bytes(repo):
    before = json.loads((repo / "reports" / "download.json").read_text())["shards"]
    params = _edit(repo, "download.seed", 1)
    try:
        rerun = _sh("dvc", "repro", "download", cwd=repo)
        assert "Running stage 'download'" in rerun.stdout
        after = json.loads((repo / "reports" / "download.json").read_text())["shards"]
        assert after != before
    finally:
        (repo / "params.yaml").write_text(params)
        _sh("dvc", "repro", "download", cwd=repo)
    assert json.loads((repo / "reports" / "download.json").read_text())["shards"] == before


# ------------------------------------------------------------------ the documented commands
# Last in this module: `dvc exp run` leaves its results in the workspace.

DOCS = ("README.md", "docs/storage.md")
# The set-up and this suite themselves (what CI runs), and the benchmarks (their own 20 minutes; tests/test_bench.py)
NOT_RUN = ("make run", "make test", "make bench", "python -m pytest")
REFUSED = {"--prompt": "--prompt is for text models"}  # the README says a class model refuses a prompt, and how
SERVER_WAIT_S = 90.0


def documented_commands(root: Path, doc: str) -> list[str]:
    """The command lines of `doc`'s bash blocks, as a reader types them (comments dropped)."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", (root / doc).read_text(), re.S):
        for line in block.splitlines():
            command = line.split("  #")[0].strip()
            if command and not command.startswith(("#", "source .venv/bin/activate", *NOT_RUN)):
                lines.append(command)
    return lines


def params_edits(root: Path, doc: str) -> dict[str, str]:
    """`# in params.yaml:  key: value` comment lines of a doc's bash blocks."""
    return dict(re.findall(r"^#\s+(?:in params\.yaml:)?\s+([\w.]+): (\S+)$", (root / doc).read_text(), re.M))


class CleanShell:
    """Commands run as a reader runs them: a fresh bash, no profile, a bare PATH, the venv entered with `source`."""

    def __init__(self, repo: Path, home: Path):
        home.mkdir(parents=True, exist_ok=True)
        (home / ".gitconfig").write_text("[user]\n\tname = reader\n\temail = reader@example.com\n")  # dvc exp commits
        self.repo, self.exports, self.servers = repo, "", []
        self.env = {"HOME": str(home), "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}

    def script(self, command: str) -> list[str]:
        return ["bash", "--noprofile", "--norc", "-c", f"source .venv/bin/activate{self.exports} && {command}"]

    def run(self, command: str, timeout: float = REPRO_TIMEOUT_S) -> subprocess.CompletedProcess:
        if command.startswith("export "):
            self.exports += f" && {command}"
            return subprocess.CompletedProcess(command, 0, "", "")
        if command.endswith("&"):  # a server in the background, stopped when the test ends
            self.servers.append(subprocess.Popen(self.script(command.rstrip("& ")), cwd=self.repo, env=self.env,
                                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
            time.sleep(3)
            return subprocess.CompletedProcess(command, 0, "", "")
        return subprocess.run(self.script(command), cwd=self.repo, env=self.env, capture_output=True, text=True,
                              timeout=timeout)

    def serve(self, command: str, until: str) -> str:
        """A long-running command: its output until it prints `until` (or SERVER_WAIT_S pass), then it is stopped."""
        lines: list[str] = []
        with subprocess.Popen(self.script(command), cwd=self.repo, env=self.env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True) as process:
            reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
            reader.start()
            deadline = time.monotonic() + SERVER_WAIT_S
            while time.monotonic() < deadline and process.poll() is None and not any(until in line for line in lines):
                time.sleep(1)
            os.killpg(process.pid, signal.SIGTERM)
            reader.join(30)
        return "".join(lines)

    def stop(self) -> None:
        for server in self.servers:
            os.killpg(server.pid, signal.SIGTERM)


def _enter(repo: Path, root: Path) -> None:
    """The workspace as a reader has it: the venv beside it, the reproduced state committed (for `dvc exp`)."""
    if not (repo / ".venv").exists():
        (repo / ".venv").symlink_to(Path(sys.executable).resolve().parent.parent if not (root / ".venv").is_dir() else root / ".venv")
    _sh("git", "add", "-A", cwd=repo)
    _sh("git", "-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "-qm", "reproduced", "--allow-empty",
        cwd=repo)


def _experiments(shown: list) -> dict[str, dict]:
    """`dvc exp show --json`: each named experiment's (and the workspace's) data: metrics, params, outs."""
    found: dict[str, dict] = {}

    def walk(node) -> None:  # noqa: ANN001 - JSON
        if isinstance(node, dict):
            if isinstance(node.get("data"), dict) and (node.get("name") or node.get("rev") == "workspace"):
                found.setdefault(node.get("name") or "workspace", node["data"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(shown)
    return found


# Relative: 2 ranks read other shards than 1 process, two draws of one training (docs/scaling.md; after the 20 steps
# of SHORT). tests/test_ddp.py holds the exact equivalence, when the ranks' batches are the process's.
GUIDE_VAL_LOSS_TOLERANCE = 0.15


def test_the_scaling_guide_runs_as_written_and_matches_one_process(repo, root, tmp_path):
    """docs/scaling.md's commands: 2 DDP processes beside the workspace's 1 of the same global batch; download and
    degrade on a 2-worker Dask cluster beside the workspace's local pool (the same bytes)."""
    _enter(repo, root)
    shell = CleanShell(repo, tmp_path / "home")
    try:
        for command in documented_commands(root, "docs/scaling.md"):
            result = shell.run(command)
            assert result.returncode == 0 and "Traceback" not in result.stderr, f"{command}:\n{result.stderr[-3000:]}"
    finally:
        shell.stop()
    runs = _experiments(json.loads(_sh("dvc", "exp", "show", "--json", "--all-commits", cwd=repo).stdout))
    one, two = (runs[name]["metrics"]["metrics/ldm.json"]["data"] for name in ("workspace", "two-processes"))
    assert two["distributed"]["world_size"] == 2 and one["distributed"]["world_size"] == 1
    for key in ("global_batch", "effective_lr"):
        assert one["distributed"][key] == two["distributed"][key]
    assert one["train"]["batches"] == two["train"]["batches"]
    assert two["val"]["val/loss"] == pytest.approx(one["val"]["val/loss"], rel=GUIDE_VAL_LOSS_TOLERANCE)
    for out in ("data/images", "data/pairs"):
        assert runs["dask-2"]["outs"][out]["hash"] == runs["workspace"]["outs"][out]["hash"]


@pytest.fixture(scope="module")
def documented(repo, root, tmp_path_factory) -> tuple[int, list[str]]:
    """README.md and docs/storage.md, command by command, in the reproduced workspace (what `make run` leaves): how
    many ran, and the failures. A fixture of the module's last tests, so it runs once, after every other test."""
    _enter(repo, root)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(repo / "photo.jpg")
    hole = np.zeros((40, 56), dtype=np.uint8)
    hole[8:24, 16:40] = 255
    Image.fromarray(hole).save(repo / "hole.png")
    save_layouts(repo / "boxes.json", [Layout("street", None, None, (Box(1, 0.0, 0.5, 1.0, 1.0), Box(3, 0.3, 0.1, 0.7, 0.6)))])
    shell = CleanShell(repo, tmp_path_factory.mktemp("home"))
    failures, ran = [], 0
    try:
        for doc in DOCS:
            commands = documented_commands(root, doc)
            if doc == "docs/storage.md":  # its local S3 walkthrough sets up what the commands above it assume
                walkthrough = commands.index(next(c for c in commands if "moto_server" in c))
                commands = commands[walkthrough:] + commands[:walkthrough]
                _apply_edits(repo, params_edits(root, doc))
            for command in commands:
                ran += 1
                failure = _run_documented(shell, doc, command)
                if failure:
                    failures.append(failure)
    finally:
        shell.stop()
        for pulled in ("/srv/ldm", "/srv/models/ldm", "/tmp/ldm-v1", "/tmp/ldm-latest"):
            shutil.rmtree(pulled, ignore_errors=True)
    return ran, failures


def _apply_edits(repo: Path, edits: dict[str, str]) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for dotted, value in edits.items():
        set_param(params, dotted, value)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _run_documented(shell: CleanShell, doc: str, command: str) -> str | None:
    """Run one documented command as a reader would; what went wrong, or None."""
    if command.startswith("ldm serve"):
        served = shell.serve(command, until="polling for scheduled runs")
        return None if "polling for scheduled runs" in served else f"{doc}: {command}: never said it serves"
    result = shell.run(command)
    refusal = next((message for flag, message in REFUSED.items() if flag in command), None)
    ok = result.returncode == 2 and refusal in result.stderr if refusal else result.returncode == 0
    if ok and "Traceback" not in result.stderr:
        return None
    return f"{doc}: {command}: exit {result.returncode}\n{result.stdout[-1500:]}\n{result.stderr[-1500:]}"


# The last three tests of the module share the `documented` run (and so run after every other test): xdist hands a
# worker its next test file when two tests of its current one are left, and these are seconds each, not minutes.


def test_every_documented_command_runs_as_written_from_a_clean_shell(documented):
    ran, failures = documented
    assert ran >= 25 and failures == [], "\n\n".join(failures)


def test_the_documented_commands_leave_the_pictures_they_name(repo, documented):
    assert (repo / "samples" / "grid.png").is_file() and Image.open(repo / "photo_x4.png").size == (56 * 4, 40 * 4)
    assert Image.open(repo / "out" / "photo-1.png").size == (56, 40)
    assert (repo / "samples" / "layout" / "grid.png").is_file()


def test_the_documented_vq_experiment_sits_beside_the_workspace(repo, documented):
    runs = _experiments(json.loads(_sh("dvc", "exp", "show", "--json", "--all-commits", cwd=repo).stdout))
    vq = runs["vq"]["params"]["params.yaml"]["data"]["autoencoder"]["preset"]
    assert vq == "vq-f4-tiny" != runs["workspace"]["params"]["params.yaml"]["data"]["autoencoder"]["preset"]
    assert "metrics/ldm.json" in runs["vq"]["metrics"]
