"""The `ldm-evaluate-release` flow: pull a release by version or alias, evaluate it, compare.

The evaluation is a command run on the pulled folder: by default the `evaluate`
stage's own `cmd` from the workspace's dvc.yaml, with its models, report and
grids pointed at the release (the data paths stay as dvc.yaml writes them). Its
JSON report is set against the metrics the release was published with, in a
Prefect table.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import yaml
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows import dvc
from flows.config import load_config, release_store
from flows.pipeline import transient_only
from flows.report import metrics_rows
from ldm.errors import InvalidInput
from ldm.storage import flatten_metrics

# Placeholders: {release} the pulled folder, {metrics} the report to write, {params} params.yaml, {workdir}.
# Grids go beside the pulled release, never over the workspace's reports/.
RELEASE_OPTIONS = {"--params": "{params}", "--models": "{release}/models", "--metrics": "{metrics}",
                   "--grids": "{release}/evaluation"}


def evaluate_command(workdir: Path, stage: str = "evaluate") -> list[str]:
    """dvc.yaml's `cmd` of the evaluate stage with RELEASE_OPTIONS' values put in (placeholders left to fill)."""
    dvc_yaml = workdir / "dvc.yaml"
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"] if dvc_yaml.is_file() else {}
    if stage not in stages:
        raise InvalidInput(f"{dvc_yaml} has no {stage!r} stage; pass `command` (placeholders {{release}} {{metrics}} {{params}})")
    args = shlex.split(stages[stage]["cmd"])
    for i, arg in enumerate(args[:-1]):
        args[i + 1] = RELEASE_OPTIONS.get(arg, args[i + 1])
    return args


@task(name="pull-release", retry_condition_fn=transient_only, retries=2, retry_delay_seconds=10, cache_policy=NO_CACHE)
def pull_release(workdir: str, params_file: str, store: str | None, name: str, version: int | None, alias: str | None,
                 dest: str) -> dict[str, Any]:
    """Download and verify one release into `dest`; its manifest comes back."""
    config = load_config(Path(workdir) / params_file)
    release = release_store(config, store, Path(workdir)).pull(name, Path(dest), version=version, alias=alias)
    get_run_logger().info("pulled %s release %d into %s", name, release.version, dest)
    return release.manifest


@task(name="evaluate", cache_policy=NO_CACHE)
def run_evaluation(workdir: str, command: list[str], timeout_s: float) -> None:
    """Run the evaluation command; a non-zero exit fails the flow with its last line."""
    outcome = dvc.run_command(command, Path(workdir), timeout_s, dvc.subprocess_env(), get_run_logger())
    dvc.check(outcome, command[0] if command[:2] != ["python", "-m"] else " ".join(command[:3]))


@flow(name="ldm-evaluate-release")
def evaluate_release(name: str = "ldm", version: int | None = None, alias: str | None = None, workdir: str = ".",
                     params_file: str = "params.yaml", store: str | None = None, dest: str | None = None,
                     command: list[str] | None = None, timeout_s: float = 86400.0) -> dict[str, Any]:
    """Pull release `name` (a version, an alias, or the latest), evaluate it, report against its published metrics."""
    root = Path(workdir).resolve()
    command = command or evaluate_command(root)
    label = f"v{version}" if version is not None else alias or "latest"
    target = Path(dest) if dest else root / ".cache" / "releases" / f"{name}-{label}"
    manifest = pull_release(str(root), params_file, store, name, version, alias, str(target))
    out = target.parent / f"{target.name}-evaluation.json"
    values = {"release": str(target), "metrics": str(out), "params": str(root / params_file), "workdir": str(root)}
    run_evaluation(str(root), [_fill(part, values) for part in command], timeout_s)
    if not out.is_file():
        raise InvalidInput(f"the evaluation command wrote no report at {out} (the {{metrics}} placeholder)")
    current = flatten_metrics(json.loads(out.read_text()))
    create_table_artifact(metrics_rows(current, _published(manifest, current), f"published with v{manifest['version']}"),
                          key="ldm-evaluate-release", description=f"{name} v{manifest['version']} re-evaluated")
    return {"name": name, "version": manifest["version"], "release_dir": str(target), "metrics": current}


def _published(manifest: dict[str, Any], current: dict[str, float]) -> dict[str, float]:
    """The release's metric for each re-evaluated key, where exactly one published report has it (`file:key`)."""
    found: dict[str, list[float]] = {}
    for key, value in (manifest.get("metrics") or {}).items():
        found.setdefault(key.rpartition(":")[2], []).append(value)
    return {key: values[0] for key, values in found.items() if key in current and len(values) == 1}


def _fill(part: str, values: dict[str, str]) -> str:
    """Replace the known {placeholders} only; other braces (code in `python -c`) stay as written."""
    for key, value in values.items():
        part = part.replace("{" + key + "}", value)
    return part
