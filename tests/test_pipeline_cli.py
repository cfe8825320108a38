"""The DVC pipeline for real: `dvc repro` in a temporary git + DVC repository."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow


def _sh(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def repo(tmp_path_factory, root) -> Path:
    """A copy of the project's pipeline files in a fresh git + DVC repository, reproduced once."""
    repo = tmp_path_factory.mktemp("pipeline")
    shutil.copy(root / "dvc.yaml", repo / "dvc.yaml")
    (repo / "params.yaml").write_text(short_params((root / "params.yaml").read_text()))
    for name in ("ldm", "stages", "data/source"):
        shutil.copytree(root / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    _sh("git", "init", "-q", cwd=repo)
    _sh("dvc", "init", "-q", cwd=repo)
    _sh("dvc", "repro", cwd=repo)
    return repo


# The embedded default with training and sampling cut short: the DAG and its files, not the model quality.
SHORT = {"train_autoencoder.steps": 40, "train_autoencoder.val_every": 40, "train_autoencoder.checkpoint_every": 40,
         "train_autoencoder.recipe.decay_steps": 40, "evaluate.samples": 8, "evaluate.sampling.steps": 5,
         "evaluate.sr_samples": 4, "evaluate.sr_sampling.steps": 5, "evaluate.feature_extractor": "random-conv",
         # train_sr inherits these from train_ldm (it states only what differs)
         **{f"train_ldm.{k}": v for k, v in {"steps": 20, "val_every": 20, "checkpoint_every": 20, "batch_size": 16}.items()}}


def set_param(params: dict, dotted: str, value) -> None:
    """params[a][b][c] = value for "a.b.c"; the key must exist, so a renamed key fails here."""
    *parents, key = dotted.split(".")
    for part in parents:
        params = params[part]
    assert key in params, f"params.yaml has no {dotted}"
    params[key] = value


def short_params(text: str) -> str:
    """params.yaml with the training stages shortened."""
    params = yaml.safe_load(text)
    for dotted, value in SHORT.items():
        set_param(params, dotted, value)
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
    assert report["counts"]["train"] >= 1000 and report["counts"]["val"] >= 200
    shards = sorted(p.name for p in (repo / "data" / "images").glob("*.tar"))
    assert shards == sorted(report["shards"])
    assert report["lineage"]["params"]["data"]["resolution"] == 64
    pairs = json.loads((repo / "reports" / "degrade.json").read_text())
    assert pairs["counts"] == report["counts"]
    assert (repo / "reports" / "degrade.png").stat().st_size > 0
    autoencoder = json.loads((repo / "metrics" / "autoencoder.json").read_text())
    assert autoencoder["train"]["batches"] == 40
    stats = json.loads((repo / "data" / "latents" / "stats.json").read_text())
    assert stats["counts"]["train"] == report["counts"]["train"] and stats["counts"]["pairs_val"] == report["counts"]["val"]
    assert abs(stats["scaled_std"] - 1.0) <= 0.02 and stats["first_batch"]["std"] > 0
    for name in ("ldm", "ldm_sr"):
        config = json.loads((repo / "models" / name / "config.json").read_text())
        assert config["model"]["scale_factor"] == stats["scale_factor"]
        assert json.loads((repo / "metrics" / f"{name}.json").read_text())["train"]["batches"] == 20
    evaluation = json.loads((repo / "metrics" / "evaluate.json").read_text())
    assert evaluation["ldm"]["samples"] == 8 and "fid" in evaluation["ldm"] and "psnr" in evaluation["sr"]
    assert (repo / "reports" / "evaluate" / "samples.png").stat().st_size > 0


def test_status_is_clean_and_a_second_repro_skips(repo):
    status = _sh("dvc", "status", "--json", cwd=repo)
    assert json.loads(status.stdout) == {}
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
        assert set(stale) == {"train_ldm", "train_sr"}  # train_sr inherits what it does not set
    finally:
        (repo / "params.yaml").write_text(params)


@pytest.mark.parametrize("module,stale", [
    ("ldm/data/schema.py", {"download", "degrade", "train_autoencoder", "cache_latents", "train_ldm", "train_sr", "evaluate"}),
    ("stages/params/base.py", {"download", "degrade", "train_autoencoder", "cache_latents", "train_ldm", "train_sr", "evaluate"}),
    ("ldm/latent_diffusion/unet.py", {"train_ldm", "train_sr", "evaluate"}),
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
