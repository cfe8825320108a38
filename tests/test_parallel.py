"""map_tasks: results in task order, transient failures retried and recorded, the rest one line naming the task."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ldm.errors import InvalidInput
from ldm.parallel import Retry, TaskCrashed, TaskFailed, TaskLog, TaskRecord, map_tasks, task_pool, transient_errors


def _flaky(job: tuple[str, int]) -> int:
    """Fails with an OSError on the first attempt of every odd item (a marker file remembers the attempt)."""
    folder, value = job
    marker = Path(folder) / f"{value}.tried"
    if value % 2 and not marker.exists():
        marker.touch()
        raise ConnectionResetError(f"connection reset while item {value} ran")
    return value * value


def _always(job: tuple[str, int]) -> int:
    folder, value = job
    if value == 2:
        raise TimeoutError("the store did not answer")
    return value


def _bad_input(value: int) -> int:
    if value == 1:
        raise InvalidInput(f"shard-{value}.tar: sample k3: truncated")
    return value


def _bug(value: int) -> int:
    return 1 // (value - 2)


def test_transient_failures_are_retried_and_recorded_in_task_order(tmp_path):
    log = TaskLog()
    with task_pool(2) as pool:
        results = list(map_tasks(pool, _flaky, [(str(tmp_path), v) for v in range(6)], [f"t{v}" for v in range(6)],
                                 retries=2, log_to=log, desc="square", ahead=3))
    assert results == [v * v for v in range(6)]
    record = log.record()
    assert (record.total, record.where, record.workers) == (6, "local", 2)
    assert sorted(record.retried, key=lambda r: r.name) == [Retry(f"t{v}", 2, f"ConnectionResetError: connection reset while item {v} ran")
                                                            for v in (1, 3, 5)]
    assert TaskRecord.from_dict(record.to_dict()) == record


def test_a_task_out_of_retries_or_on_bad_input_is_one_line_naming_it(tmp_path):
    with task_pool(2) as pool:
        with pytest.raises(TaskFailed, match=r"^copy: item-2 failed 2 times, last with TimeoutError: the store did not answer;"):
            list(map_tasks(pool, _always, [(str(tmp_path), v) for v in range(4)], [f"item-{v}" for v in range(4)],
                           retries=1, log_to=TaskLog(), desc="copy"))
        log = TaskLog()
        with pytest.raises(TaskFailed, match=r"^encode: shard-1.tar: shard-1.tar: sample k3: truncated$") as bad:
            list(map_tasks(pool, _bad_input, range(3), [f"shard-{v}.tar" for v in range(3)], retries=3, log_to=log, desc="encode"))
        assert "\n" not in str(bad.value) and not log.retried  # bad input is never retried
        with pytest.raises(TaskCrashed, match=r"^divide: n2 failed with ZeroDivisionError"):
            list(map_tasks(pool, _bug, range(4), [f"n{v}" for v in range(4)], retries=3, log_to=TaskLog(), desc="divide"))


def test_a_lost_dask_worker_counts_as_transient():
    pytest.importorskip("distributed")
    from distributed.comm.core import CommClosedError
    from distributed.scheduler import KilledWorker

    assert {KilledWorker, CommClosedError, OSError} <= set(transient_errors())


def _dies_once(job: tuple[str, int]) -> int:
    """Kills its worker process on its first attempt: the scheduler reports the worker lost."""
    folder, value = job
    marker = Path(folder) / f"{value}.died"
    if value == 1 and not marker.exists():
        marker.touch()
        os._exit(1)
    return value + 10


def test_a_task_whose_dask_worker_died_runs_again(tmp_path):
    distributed = pytest.importorskip("distributed")
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):  # the scheduler gives up at once
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
            log = TaskLog()
            with task_pool(1, cluster.scheduler_address) as pool:
                results = list(map_tasks(pool, _dies_once, [(str(tmp_path), v) for v in range(3)], ["a", "b", "c"],
                                         retries=2, log_to=log, desc="add"))
    assert results == [10, 11, 12]
    (retry,) = log.record().retried
    assert retry.name == "b" and retry.attempts == 2 and retry.error.startswith("KilledWorker")
    assert log.record().where == f"dask {cluster.scheduler_address}" and log.record().workers == 2
