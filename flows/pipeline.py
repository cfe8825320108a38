"""The `ldm-pipeline` flow: every dvc.yaml stage in DAG order, `dvc push`, a release, a report.

One `dvc status` finds the stages that changed (`dvc.plan`); each of those,
and each stage downstream of one, is a task that runs `dvc repro -s <stage>`
in a subprocess with its own timeout (the rest are reported unchanged without
one); only failures that look transient (network, a busy DVC lock) are
retried. A file lock in .dvc/tmp keeps two runs out of one workspace.

The stage tasks run in the subflow `ldm-stages` (none when no stage is stale)
on the task runner that `orchestrate.task_runner` picks: Prefect's threads in
this process, or prefect-dask's `DaskTaskRunner` on the cluster at `cluster.address` (a
temporary LocalCluster when it is empty). On a Dask worker the task hands the
stage that cluster's scheduler ($LDM_CLUSTER_ADDRESS), so the stage's own
per-shard tasks run there too, and gives up its worker slot while it waits.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import State, TaskRun
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from flows import dvc
from flows.config import Config, git_revision, load_config, release_store
from flows.report import metrics_rows, summary_markdown
from ldm.errors import InvalidInput, UserError
from ldm.parallel import scheduler_address
from ldm.storage import ReleaseNotFound, StoreError
from ldm.storage.s3 import StoreUnavailable
from stages.params import ADDRESS_ENV

LOCK = Path(".dvc") / "tmp" / "ldm-pipeline.lock"
UNCHANGED = "skipped (unchanged)"  # a stage's outcome when DVC found nothing to do


class WorkspaceBusy(UserError, RuntimeError):
    """Another pipeline run holds the workspace."""


def transient_only(task: Any, task_run: TaskRun, state: State) -> bool:
    """Prefect's retry condition: retry network trouble and busy locks, never a stage that failed on its own."""
    try:
        state.result()
    except dvc.CommandFailed as exc:
        return exc.transient
    except StoreUnavailable:
        return True
    except BaseException:  # noqa: BLE001 - anything else is the stage's own failure
        return False
    return False


@contextlib.contextmanager
def workspace_lock(workdir: Path, timeout_s: float) -> Iterator[None]:
    """Hold the workspace for one run; a second run waits `timeout_s`, then fails saying why."""
    if not (workdir / ".dvc").is_dir():
        raise InvalidInput(f"{workdir} is not a DVC repository (no .dvc folder); run `dvc init` there or pass workdir")
    path = workdir / LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(path, timeout=timeout_s):
            yield
    except Timeout:
        raise WorkspaceBusy(f"another pipeline run holds {path}; wait for it, or raise orchestrate.lock_timeout_s") from None


@contextlib.contextmanager
def dask_scheduler() -> Iterator[str | None]:
    """The scheduler of the Dask worker running this task (None off Dask); the worker's slot is free meanwhile."""
    try:
        from distributed import get_worker, worker_client

        get_worker()
    except (ImportError, ValueError):
        yield None
        return
    with worker_client() as client:  # secedes from the worker's threads: the stage's tasks may use this one
        yield client.scheduler.address


@task(name="dvc-repro", task_run_name="repro {stage}", retry_condition_fn=transient_only, cache_policy=NO_CACHE)
def repro_stage(workdir: str, stage: str, timeout_s: float) -> str:
    """`dvc repro -s <stage>`: 'ran' or 'skipped' (DVC found nothing changed)."""
    env = dvc.subprocess_env()
    with dask_scheduler() as address:
        if address:
            env[ADDRESS_ENV] = address
        outcome = dvc.run_command(dvc.dvc("repro", "--single-item", stage), Path(workdir), timeout_s, env, get_run_logger())
    dvc.check(outcome, f"dvc repro -s {stage}")
    return UNCHANGED if "didn't change, skipping" in outcome.tail else "ran"


def stage_runner(config: Config) -> TaskRunner:
    """The task runner of the stage tasks (`orchestrate.task_runner`)."""
    if config.orchestrate.task_runner == "threads":
        return ThreadPoolTaskRunner()
    from prefect_dask import DaskTaskRunner

    if config.cluster.address:
        return DaskTaskRunner(address=scheduler_address(config.cluster.address))
    # A LocalCluster for this run. Its workers report to this run's Prefect API: without the URL, each would start a
    # temporary server of its own, left running after the cluster closes.
    api = {"PREFECT_API_URL": str(get_client(sync_client=True).api_url)}
    return DaskTaskRunner(cluster_kwargs={"dashboard_address": None, "env": api})


@flow(name="ldm-stages")
def run_stages(workdir: str, order: list[str], stale: list[str], timeouts: dict[str, float], retries: int,
               retry_delay_s: float) -> dict[str, str]:
    """Each stale stage one task on this flow's task runner, one after another in DAG order; the others are up to
    date (`dvc.plan`) and cost no `dvc repro`."""
    repro = repro_stage.with_options(retries=retries, retry_delay_seconds=retry_delay_s)
    return {stage: repro.submit(workdir, stage, timeouts[stage]).result() if stage in stale else UNCHANGED
            for stage in order}


@task(name="dvc-push", retry_condition_fn=transient_only, cache_policy=NO_CACHE)
def push_outputs(workdir: str, params_file: str, timeout_s: float) -> str | None:
    """Configure the remote from params, then `dvc push`; None (and a logged reason) when there is no remote."""
    config = load_config(Path(workdir) / params_file)
    remote = dvc.configure_remote(Path(workdir), config.storage.dvc_remote, config.s3)
    if remote is None:
        get_run_logger().warning("no DVC remote: storage.dvc_remote is empty and the repository has no default remote; "
                                 "skipping dvc push")
        return None
    outcome = dvc.run_command(dvc.dvc("push", "--remote", remote), Path(workdir), timeout_s, dvc.subprocess_env(config.s3),
                              get_run_logger(), retry_on_timeout=True)
    dvc.check(outcome, "dvc push")
    return remote


@task(name="release", retry_condition_fn=transient_only, cache_policy=NO_CACHE)
def release_outputs(workdir: str, params_file: str, store: str | None, alias: str | None) -> dict[str, Any]:
    """Publish orchestrate.release.paths of the workspace; the previous release's metrics come back for the report."""
    root = Path(workdir)
    config = load_config(root / params_file)
    spec = config.orchestrate.release
    missing = [path for path in spec.paths if not (root / path).exists()]
    if missing:
        raise StoreError(f"orchestrate.release.paths: {', '.join(missing)} not in {root} after the stages ran; "
                         "list only what dvc.yaml produces")
    releases = release_store(config, store, root)
    try:
        previous = releases.resolve(spec.name)
    except ReleaseNotFound:
        previous = None
    current = dvc.metrics(root)
    release, new = releases.publish({path: root / path for path in spec.paths}, spec.name, (alias or spec.alias) or None,
                                    params=config.params, metrics=current, git_revision=git_revision(root))
    return {"release": release, "new": new, "store": releases.url, "metrics": current,
            "previous": previous.manifest.get("metrics") if previous else None,
            "previous_label": f"release {previous.version}" if previous else "no release before"}


@flow(name="ldm-pipeline")
def pipeline(workdir: str = ".", params_file: str = "params.yaml", targets: list[str] | None = None, store: str | None = None,
             alias: str | None = None, push: bool | None = None, release: bool = True) -> dict[str, Any]:
    """Run the DVC DAG stage by stage, push the outputs, release the model, report."""
    logger = get_run_logger()
    root = Path(workdir).resolve()
    config = load_config(root / params_file)
    options = config.orchestrate
    with workspace_lock(root, options.lock_timeout_s):
        steps = dvc.plan(root, targets)
        logger.info("stages in DAG order: %s; changed or downstream of a change: %s", ", ".join(steps.order),
                    ", ".join(stage for stage in steps.order if stage in steps.stale) or "none")
        timeouts = {stage: options.stage_timeouts.get(stage, options.stage_timeout_s) for stage in steps.order}
        stages = dict.fromkeys(steps.order, UNCHANGED)  # nothing stale: no subflow, no task runner (no Dask cluster)
        if steps.stale:
            stages = run_stages.with_options(task_runner=stage_runner(config))(
                str(root), steps.order, sorted(steps.stale), timeouts, options.retries, options.retry_delay_s)
        remote, push_note = None, "(orchestrate.push is off)"
        if options.push if push is None else push:
            pushing = push_outputs.with_options(retries=options.retries, retry_delay_seconds=options.retry_delay_s)
            remote = pushing(str(root), params_file, options.push_timeout_s)
            push_note = "" if remote else "(no remote configured)"
        made = None
        if release:
            releasing = release_outputs.with_options(retries=options.retries, retry_delay_seconds=options.retry_delay_s)
            made = releasing(str(root), params_file, store, alias)
    grids = sorted(png for path in options.release.paths for png in _pngs(root / path))
    summary: dict[str, Any] = {"stages": stages, "remote": remote}
    if made is None:
        create_markdown_artifact(summary_markdown(workdir=root, stages=stages, remote=remote, push_note=push_note, release=None,
                                                  new_release=False, store=None, grids=grids), key="ldm-pipeline-summary")
        return summary
    create_table_artifact(metrics_rows(made["metrics"], made["previous"], made["previous_label"]), key="ldm-pipeline-metrics",
                          description=f"this run's metrics against {made['previous_label']}")
    create_markdown_artifact(summary_markdown(workdir=root, stages=stages, remote=remote, push_note=push_note,
                                              release=made["release"], new_release=made["new"], store=made["store"], grids=grids),
                             key="ldm-pipeline-summary")
    summary.update(release=made["release"].version, new_release=made["new"], store=made["store"],
                   content_sha256=made["release"].content_sha256)
    return summary


def _pngs(path: Path) -> list[Path]:
    if path.is_file():
        return [path] if path.suffix == ".png" else []
    return sorted(path.rglob("*.png")) if path.is_dir() else []

