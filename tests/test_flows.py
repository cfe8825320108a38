"""The flows: DAG order from dvc.yaml, retries for transient failures only, push, release, evaluate, schedules."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import pytest
import yaml

from flows import dvc
from flows.cli import main
from flows.pipeline import LOCK, workspace_lock
from flows.report import metrics_rows
from ldm.errors import InvalidInput
from ldm.storage import S3Settings, open_store

def _sh(*args: str, cwd: Path) -> str:
    result = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _toy_repo(path: Path, stages: dict, params: dict | None = None) -> Path:
    """A DVC repository (no git) with the given stages and params."""
    path.mkdir(parents=True, exist_ok=True)
    _sh(sys.executable, "-m", "dvc", "init", "--no-scm", "-q", cwd=path)
    (path / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    (path / "params.yaml").write_text(yaml.safe_dump(params or {}))
    return path


# ---------------------------------------------------------------- DAG order, commands


def test_topological_order_keeps_dvc_order_among_ready_stages():
    assert dvc.topological(["a", "b", "c", "d"], [("c", "b"), ("a", "b")]) == ["a", "c", "b", "d"]
    with pytest.raises(ValueError, match="cycle"):
        dvc.topological(["a", "b"], [("a", "b"), ("b", "a")])


def test_stage_order_comes_from_dvc(tmp_path):
    stages = {
        "report": {"cmd": "cat mid.txt > report.txt", "deps": ["mid.txt"], "outs": ["report.txt"]},
        "solo": {"cmd": "echo solo > solo.txt", "outs": ["solo.txt"]},
        "source": {"cmd": "echo a > src.txt", "outs": ["src.txt"]},
        "mid": {"cmd": "cat src.txt > mid.txt", "deps": ["src.txt"], "outs": ["mid.txt"]},
    }
    repo = _toy_repo(tmp_path / "repo", stages)
    assert dvc.stage_order(repo) == ["solo", "source", "mid", "report"]
    assert dvc.stage_order(repo, ["mid"]) == ["source", "mid"]
    assert dvc.stage_order(repo, ["report", "solo"]) == ["solo", "source", "mid", "report"]  # `ldm run --target` twice
    with pytest.raises(InvalidInput, match="no stage 'nope' in dvc.yaml; its stages: mid, report, solo, source"):
        dvc.stage_order(repo, ["nope"])
    assert dvc.plan(repo).stale == {"solo", "source", "mid", "report"}  # never run
    _sh(sys.executable, "-m", "dvc", "repro", "-q", cwd=repo)
    assert dvc.plan(repo).stale == set()
    stages["source"]["cmd"] = "echo b > src.txt"
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    (repo / "report.txt").unlink()
    assert dvc.plan(repo).stale == {"source", "mid", "report"}  # mid: downstream of source, unchanged itself
    assert dvc.plan(repo, ["mid"]) == dvc.Plan(["source", "mid"], frozenset({"source", "mid"}))


def test_failures_are_transient_only_when_the_output_says_network_or_lock():
    with pytest.raises(dvc.CommandFailed) as busy:
        dvc.check(dvc.Outcome(1, "ERROR: Unable to acquire lock. Most likely another DVC process is running"), "dvc repro")
    assert busy.value.transient
    with pytest.raises(dvc.CommandFailed) as broken:
        dvc.check(dvc.Outcome(1, "ERROR: failed to reproduce 'train': exited with 2"), "dvc repro")
    assert not broken.value.transient and "exited with 2" in str(broken.value)


def test_timeout_stops_the_whole_process_group(tmp_path):
    marker = tmp_path / "late"
    start = time.monotonic()
    with pytest.raises(dvc.CommandFailed, match="timeout") as info:
        dvc.run_command(["sh", "-c", f"(sleep 1; touch {marker}) & sleep 30"], tmp_path, 0.3, dvc.subprocess_env())
    assert not info.value.transient and time.monotonic() - start < 5
    time.sleep(1.5)
    assert not marker.exists()  # the background child died with its group


def test_a_second_run_is_kept_out_of_the_workspace(tmp_path):
    (tmp_path / ".dvc").mkdir()
    held, release = threading.Event(), threading.Event()

    def first_run():
        with workspace_lock(tmp_path, 0):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=first_run)
    thread.start()
    held.wait(10)
    with pytest.raises(RuntimeError, match=f"another pipeline run holds .*{LOCK.name}"):
        with workspace_lock(tmp_path, 0.2):
            pass
    release.set()
    thread.join()
    with workspace_lock(tmp_path, 0):
        pass
    with pytest.raises(ValueError, match="not a DVC repository"):
        with workspace_lock(tmp_path / "elsewhere", 0):
            pass


def test_metrics_rows_compare_against_the_previous_release():
    rows = metrics_rows({"a:fid": 10.0, "a:new": 1.0}, {"a:fid": 12.5, "a:gone": 3.0}, "release 1")
    assert rows == [{"metric": "a:fid", "this run": "10", "release 1": "12.5", "change": "-2.5"},
                    {"metric": "a:gone", "this run": "", "release 1": "3", "change": ""},
                    {"metric": "a:new", "this run": "1", "release 1": "", "change": ""}]


# ---------------------------------------------------------------- DVC remote on S3


def test_dvc_pushes_to_the_s3_remote_without_writing_credentials(s3_env, tmp_path):
    boto3.client("s3", endpoint_url=s3_env).create_bucket(Bucket="dvc-remote")
    repo = _toy_repo(tmp_path / "repo", {"make": {"cmd": "echo data > out.txt", "outs": ["out.txt"]}})
    _sh(sys.executable, "-m", "dvc", "repro", "-q", cwd=repo)
    settings = S3Settings(endpoint_url=s3_env, max_attempts=2)
    assert dvc.configure_remote(repo, "s3://dvc-remote/cache", settings) == dvc.REMOTE
    dvc.check(dvc.run_command(dvc.dvc("push"), repo, 120, dvc.subprocess_env(settings)), "dvc push")
    keys = [item["Key"] for item in boto3.client("s3", endpoint_url=s3_env).list_objects_v2(Bucket="dvc-remote")["Contents"]]
    assert keys and all(key.startswith("cache/files/md5/") for key in keys)
    local = (repo / ".dvc" / "config.local").read_text()
    assert s3_env in local and "testing-secret" not in local and "testing-key" not in local
    assert "remote" not in (repo / ".dvc" / "config").read_text()  # the git-tracked config stays untouched


# ---------------------------------------------------------------- flows under Prefect


def test_stages_retry_transient_failures_only(prefect_harness, tmp_path, capsys):
    from flows.pipeline import pipeline

    attempts = tmp_path / "attempts"
    attempts.mkdir()
    flaky = ("import pathlib, sys; p = pathlib.Path(sys.argv[1]); n = len(p.read_text()) if p.exists() else 0; "
             "p.write_text('x' * (n + 1)); sys.exit(0 if n else 'Connection reset by peer')")
    broken = "import pathlib, sys; p = pathlib.Path(sys.argv[1]); p.write_text(p.read_text() + 'x' if p.exists() else 'x'); sys.exit(3)"
    stages = {"flaky": {"cmd": f'python -c "{flaky}" {attempts / "flaky"} && echo ok > flaky.txt', "outs": ["flaky.txt"]},
              "broken": {"cmd": f'python -c "{broken}" {attempts / "broken"}', "deps": ["flaky.txt"]}}
    repo = _toy_repo(tmp_path / "repo", stages, {"orchestrate": {"retries": 2, "retry_delay_s": 0.0}})
    summary = pipeline(workdir=str(repo), targets=["flaky"], push=False, release=False)
    assert summary["stages"] == {"flaky": "ran"}
    assert (attempts / "flaky").read_text() == "xx"  # failed once on "the network", retried, passed
    assert main(["run", "--workdir", str(repo), "--target", "flaky", "--no-push", "--no-release"]) == 0
    assert json.loads(capsys.readouterr().out)["stages"] == {"flaky": "skipped (unchanged)"}
    with pytest.raises(dvc.CommandFailed, match="dvc repro -s broken failed"):
        pipeline(workdir=str(repo), push=False, release=False)
    assert (attempts / "broken").read_text() == "x"  # a stage's own failure is not retried


@pytest.mark.slow
def test_ldm_run_starts_a_temporary_server_and_leaves_none_behind(tmp_path):
    """Without PREFECT_API_URL, `ldm run` starts one temporary Prefect API server for the run, and no server
    outlives the command."""
    repo = _toy_repo(tmp_path / "repo", {"make": {"cmd": "echo data > out.txt", "outs": ["out.txt"]}})
    env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}
    start = time.time()
    result = subprocess.run([sys.executable, "-m", "flows.cli", "run", "--workdir", str(repo), "--no-push", "--no-release"],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout)["stages"] == {"make": "ran"}
    assert result.stderr.count("Starting temporary server") == 1 and "Stopping temporary server" in result.stderr
    assert _prefect_servers_started_since(start) == []


def _prefect_servers_started_since(start: float) -> list[int]:
    """Prefect servers (uvicorn) of this test process's PREFECT_HOME started after `start` and still running."""
    import psutil

    found = []
    for process in psutil.process_iter(["cmdline", "create_time"]):
        try:
            if ("prefect.server.api.server:create_app" in " ".join(process.info["cmdline"] or [])
                    and process.info["create_time"] >= start
                    and process.environ().get("PREFECT_HOME") == os.environ.get("PREFECT_HOME")):
                found.append(process.pid)
        except psutil.Error:
            continue
    return found


@pytest.mark.slow
def test_stage_tasks_run_on_a_dask_cluster_under_prefect(prefect_harness, root, tmp_path, monkeypatch):
    """orchestrate.task_runner dask: the stage task on a temporary LocalCluster, the stage's shard tasks on it too."""
    from flows.pipeline import pipeline
    from stages import degrade, download
    from stages.params import parse_params

    monkeypatch.setenv("PYTHONPATH", str(root))  # the Dask workers and the stage command import this checkout
    raw = {"data": {"resolution": 32, "shard_size": 4}, "degrade": {"workers": 1, "grid_pairs": 2}}
    params = parse_params({**raw, "download": {"embedded": {"train_crops": 8, "val_crops": 4}}})
    download.run(params, download.Paths(tmp_path / "images", tmp_path / "download.json", tmp_path / "cache"))
    degrade.run(params, degrade.Paths(tmp_path / "images", tmp_path / "pairs", tmp_path / "degrade.json", tmp_path / "grid.png"))
    cmd = "python -m stages.degrade --params params.yaml --images images --out pairs --report degrade.json --grid grid.png"
    repo = _toy_repo(tmp_path / "repo", {"degrade": {"cmd": cmd, "deps": ["images"], "outs": ["pairs"]}},
                     {**raw, "orchestrate": {"task_runner": "dask", "retries": 0}})
    shutil.copytree(tmp_path / "images", repo / "images")
    start = time.time()
    assert pipeline(workdir=str(repo), push=False, release=False)["stages"] == {"degrade": "ran"}
    assert _prefect_servers_started_since(start) == []  # the workers used the run's API and left no server behind
    tasks = json.loads((repo / "degrade.json").read_text())["tasks"]
    assert tasks["where"].startswith("dask tcp://") and tasks["total"] == 3
    assert {p.name: p.read_bytes() for p in (repo / "pairs").glob("*.tar")} == {p.name: p.read_bytes() for p in (tmp_path / "pairs").glob("*.tar")}


def test_evaluate_release_runs_the_real_evaluate_stage_on_a_pulled_release(prefect_harness, ldm_inputs, root, tmp_path):
    """Train tiny models, evaluate and publish them, pull the release by alias, evaluate it again: same numbers."""
    from flows.evaluate import evaluate_command, evaluate_release
    from stages import evaluate, train_ldm
    from stages.params import parse_params

    quick = {"steps": 2, "batch_size": 8, "val_every": 2, "checkpoint_every": 2, "threads": 1}
    fast = {"samples": 4, "batch_size": 4, "sr_samples": 2, "feature_extractor": "random-conv", "grid_images": 4,
            "threads": 1, "sampling": {"steps": 2}, "sr_sampling": {"steps": 2}}
    workdir = tmp_path / "work"
    (workdir / "data").mkdir(parents=True)
    for name in ("images", "pairs"):  # the data paths dvc.yaml's evaluate cmd names
        shutil.copytree(ldm_inputs / name, workdir / "data" / name)
    shutil.copy(root / "dvc.yaml", workdir / "dvc.yaml")
    raw = {"data": {"resolution": 64, "shard_size": 40}, "train_ldm": quick, "train_sr": quick, "evaluate": fast}
    (workdir / "params.yaml").write_text(yaml.safe_dump(raw))
    params = parse_params(raw)
    models = tmp_path / "bundle" / "models"
    shutil.copytree(ldm_inputs / "models" / "autoencoder", models / "autoencoder")
    for section, name in (("train_ldm", "ldm"), ("train_sr", "ldm_sr")):
        train_ldm.run(params, train_ldm.Paths(ldm_inputs / "latents", models / "autoencoder", models / name,
                                              tmp_path / "ckpt" / name, tmp_path / f"{name}.json", tmp_path / f"{name}.csv", section))
    published = evaluate.run(params, evaluate.Paths(models, workdir / "data" / "images", workdir / "data" / "pairs",
                                                    tmp_path / "bundle" / "evaluate.json", tmp_path / "grids", tmp_path / "fid"))
    store = tmp_path / "store"
    open_store(str(store)).publish({"models": models, "metrics/evaluate.json": tmp_path / "bundle" / "evaluate.json"}, "ldm",
                                   alias="prod", metrics={"metrics/evaluate.json:sr.psnr": published["sr"]["psnr"]})

    assert evaluate_command(workdir)[:3] == ["python", "-m", "stages.evaluate"] and "{release}/models" in evaluate_command(workdir)
    result = evaluate_release(name="ldm", alias="prod", workdir=str(workdir), store=str(store))
    assert result["version"] == 1 and result["metrics"]["sr.psnr"] == published["sr"]["psnr"]  # the same seeds, the same number
    assert result["metrics"]["ldm.samples"] == 4 and "ldm.fid" in result["metrics"]
    pulled = Path(result["release_dir"])
    assert (pulled / "evaluation" / "samples.png").is_file() and not (workdir / "reports").exists()  # grids beside the release
    with pytest.raises(InvalidInput, match="has no 'evaluate' stage"):
        evaluate_release(name="ldm", alias="prod", workdir=str(tmp_path / "bundle"), store=str(store))


def test_serve_schedules_the_pipeline_with_a_cron(tmp_path, monkeypatch, capsys):
    from prefect import Flow

    calls = {}
    monkeypatch.setattr(Flow, "serve", lambda self, **kwargs: calls.update(kwargs, flow=self.name))
    assert main(["serve", "--cron", "*/5 * * * *", "--workdir", str(tmp_path)]) == 0
    assert calls["flow"] == "ldm-pipeline" and calls["cron"] == "*/5 * * * *" and calls["global_limit"] == 1
    assert calls["parameters"] == {"workdir": str(tmp_path.resolve()), "params_file": "params.yaml"}
    assert main(["serve", "--workdir", str(tmp_path)]) == 0
    assert calls["cron"] == "0 3 * * *"  # orchestrate.cron's default


def test_prefect_yaml_deploys_the_pipeline_on_a_schedule(root):
    spec = yaml.safe_load((root / "prefect.yaml").read_text())
    [deployment] = [d for d in spec["deployments"] if d["entrypoint"] == "flows/pipeline.py:pipeline"]
    assert len(deployment["schedules"][0]["cron"].split()) == 5
    assert deployment["concurrency_limit"] == 1
    from flows.pipeline import pipeline

    assert pipeline.to_deployment(name="check", cron=deployment["schedules"][0]["cron"]).name == "check"


def test_infra_describes_minio_prefect_and_a_gpu_work_pool(root):
    compose = yaml.safe_load((root / "infra" / "docker-compose.yml").read_text())
    assert {"minio", "minio-init", "prefect-server", "worker", "dask-scheduler", "dask-worker"} <= set(compose["services"])
    data = "data:/srv/ldm/data"  # the Dask workers write the data stages' shards where the stage runs
    assert data in compose["services"]["worker"]["volumes"] and data in compose["services"]["dask-worker"]["volumes"]
    assert "version enable" in " ".join(map(str, compose["services"]["minio-init"]["entrypoint"]))
    template = json.loads((root / "infra" / "k8s-gpu-job-template.json").read_text())
    container = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "{{ gpus }}"
    assert template["variables"]["properties"]["gpus"]["default"] == 1


def test_infra_launches_training_on_many_nodes_and_dask_on_kubernetes(root):
    """The SLURM and torchrun launchers parse as bash and take the stage's command from dvc.yaml; the Dask
    operator's cluster mounts the workspace volume."""
    for script in ("slurm/train_ldm.sbatch", "torchrun.sh"):
        text = (root / "infra" / script).read_text()
        assert subprocess.run(["bash", "-n", str(root / "infra" / script)]).returncode == 0
        assert "dvc repro --dry --force --single-item \"$STAGE\"" in text and "dvc commit --force \"$STAGE\"" in text
    sbatch = (root / "infra" / "slurm" / "train_ldm.sbatch").read_text()
    assert "#SBATCH --ntasks-per-node=8" in sbatch and "srun " in sbatch
    cluster = yaml.safe_load((root / "infra" / "k8s" / "dask-cluster.yaml").read_text())
    assert cluster["kind"] == "DaskCluster" and cluster["apiVersion"] == "kubernetes.dask.org/v1"
    worker = cluster["spec"]["worker"]["spec"]
    assert worker["containers"][0]["args"][:2] == ["dask", "worker"]
    assert worker["volumes"][0]["persistentVolumeClaim"]["claimName"] == "ldm-workspace"


# ---------------------------------------------------------------- the whole flow


# Stages the test runs: what `make run` runs (the Makefile's RUN_TARGETS), the class-conditional, super-resolution and
# inpainting branches with their evaluations, with SMALL settings; every branch runs under `dvc repro` in
# tests/test_pipeline_cli.py, and under this flow (every stage skipped, unchanged) in its README commands.
TARGETS = re.search(r"^RUN_TARGETS := (.+)$", (Path(__file__).parent.parent / "Makefile").read_text(), re.M)[1].split()
# What the release holds: the shipped default.
RELEASE_PATHS = ["models", "metrics", "reports"]
# Small settings for a fast run, set over the shipped params.yaml (the recipes' keys included).
SMALL = {"download.embedded.train_crops": 96, "download.embedded.val_crops": 24, "degrade.grid_pairs": 4,
         "train_autoencoder.steps": 4, "train_autoencoder.val_every": 2, "train_autoencoder.checkpoint_every": 2,
         "train_autoencoder.recipe.decay_steps": 4, "evaluate.samples": 8, "evaluate.sampling.steps": 4,
         "evaluate.sr_samples": 4, "evaluate.sr_sampling.steps": 4, "evaluate.feature_extractor": "random-conv",
         "evaluate_inpaint.samples": 4, "evaluate_inpaint.sampling.steps": 4,
         "evaluate_inpaint.feature_extractor": "random-conv", "evaluate_inpaint.lpips_net": "random-vgg16",
         "evaluate_semantic.maps": 2, "evaluate_semantic.sampling.steps": 4,
         "evaluate_layout.layouts": 2, "evaluate_layout.seeds": 2, "evaluate_layout.sampling.steps": 4,
         **{f"{s}.{k}": v for s in ("train_ldm", "train_sr", "train_inpaint", "train_semantic", "train_layout") for k, v in
            {"steps": 4, "val_every": 2, "checkpoint_every": 2, "batch_size": 8}.items()}}


def _small_params(shipped: dict, endpoint: str, bucket: str, extra: dict) -> dict:
    params = json.loads(json.dumps(shipped))
    for dotted, value in {**SMALL, **extra}.items():
        *parents, key = dotted.split(".")
        section = params
        for part in parents:
            section = section.setdefault(part, {})
        section[key] = value
    params.setdefault("storage", {}).update(releases=f"s3://{bucket}/releases", dvc_remote=f"s3://{bucket}/dvc")
    params["storage"].setdefault("s3", {}).update(endpoint_url=endpoint, max_attempts=2)
    params.setdefault("orchestrate", {}).update(retries=1, retry_delay_s=0.0)
    params["orchestrate"].setdefault("release", {}).update(paths=RELEASE_PATHS, alias="latest")
    return params


@pytest.mark.slow
def test_pipeline_flow_runs_pushes_releases_and_the_release_pulls_back(prefect_harness, s3_env, root, copy_pipeline,
                                                                       one_thread_stages, tmp_path):
    from prefect.client.orchestration import get_client

    from flows.pipeline import pipeline

    bucket = "ldm-pipeline"
    client = boto3.client("s3", endpoint_url=s3_env)
    client.create_bucket(Bucket=bucket)
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    repo = tmp_path / "repo"
    repo.mkdir()
    copy_pipeline(repo)
    params = _small_params(yaml.safe_load((root / "params.yaml").read_text()), s3_env, bucket, one_thread_stages)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _sh("git", "init", "-q", cwd=repo)
    _sh(sys.executable, "-m", "dvc", "init", "-q", cwd=repo)
    _sh("git", "add", "-A", cwd=repo)
    _sh("git", "-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "-qm", "pipeline", cwd=repo)
    head = _sh("git", "rev-parse", "HEAD", cwd=repo).strip()

    summary = pipeline(workdir=str(repo), targets=TARGETS)
    assert list(summary["stages"]) == dvc.stage_order(repo, TARGETS) and set(summary["stages"].values()) == {"ran"}
    assert summary["remote"] == dvc.REMOTE and (summary["release"], summary["new_release"]) == (1, True)
    pushed = client.list_objects_v2(Bucket=bucket, Prefix="dvc/")["KeyCount"]
    assert pushed > 0 and "testing-secret" not in (repo / ".dvc" / "config.local").read_text()

    again = pipeline(workdir=str(repo), targets=TARGETS)
    assert set(again["stages"].values()) == {"skipped (unchanged)"}
    assert (again["release"], again["new_release"]) == (1, False)  # same outputs, same release

    with get_client(sync_client=True) as prefect:
        keys = {artifact.key for artifact in prefect.read_artifacts()}
    assert {"ldm-pipeline-metrics", "ldm-pipeline-summary"} <= keys

    store = open_store(f"s3://{bucket}/releases", S3Settings(endpoint_url=s3_env, max_attempts=2))
    pulled = tmp_path / "pulled"
    release = store.pull("ldm", pulled, version=summary["release"])
    for path in RELEASE_PATHS:
        for file in (repo / path).rglob("*"):
            if file.is_file():
                assert (pulled / file.relative_to(repo)).read_bytes() == file.read_bytes()
    manifest = json.loads((pulled / "manifest.json").read_text())
    assert manifest["git_revision"] == head and manifest["content_sha256"] == release.content_sha256
    assert manifest["metrics"]["reports/download.json:counts.train"] > 0
    assert store.pull("ldm", tmp_path / "by-alias", alias="latest").version == 1
    _assert_no_credential_anywhere(repo, pulled, client, bucket)


def _assert_no_credential_anywhere(repo: Path, pulled: Path, client, bucket: str) -> None:
    """Neither the key id nor the secret of the run's credentials (s3_env) is in any file of the workspace (params,
    reports, metrics, logs, dvc's config and cache), the pulled release, any object of the bucket (release
    manifests, the DVC remote), or Prefect's artifacts and logs."""
    from prefect.client.orchestration import get_client

    secrets = [b"testing-key", b"testing-secret"]
    files = [f for folder in (repo, pulled) for f in folder.rglob("*") if f.is_file() and ".git" not in f.parts]
    leaks = [str(f) for f in files if any(secret in f.read_bytes() for secret in secrets)]
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            body = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            leaks += [f"s3://{bucket}/{item['Key']}"] * any(secret in body for secret in secrets)
    with get_client(sync_client=True) as prefect:
        texts = [json.dumps(a.data, default=str) for a in prefect.read_artifacts()] + [log.message for log in prefect.read_logs()]
    leaks += [f"prefect: {text[:80]}" for text in texts if any(secret.decode() in text for secret in secrets)]
    assert len(files) > 50 and not leaks, leaks
