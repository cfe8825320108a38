"""Where the data stages' per-shard (per-file) tasks run: a local process pool, or a Dask cluster.

Both are a `concurrent.futures.Executor`: `ProcessPoolExecutor(workers)` on this
machine, or a `distributed.Client`'s executor when a scheduler address is given
(`cluster.address` in params.yaml: `tcp://host:8786`, or a scheduler file). The
stages hand each task its inputs and seed and `map_tasks` gathers the results in
task order, so the output bytes do not depend on which pool ran them or on its
size. Tasks that write files write to the paths they are given: Dask workers
must see the workspace (the same machine or a shared filesystem).

A task that fails with a transient error (the network, the filesystem, a lost
Dask worker) runs again, up to `retries` more times; the retries, the pool and
the time taken are the `TaskRecord` a stage puts in its report. A task that
still fails stops the map with one line naming it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ldm.config import Config
from ldm.errors import InvalidInput, UserError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskPool:
    """An executor and where it runs: `local` processes or the Dask scheduler's address, and how many workers."""

    executor: Executor
    where: str
    workers: int


def scheduler_address(address: str) -> str:
    """The scheduler's own address: `address` itself, or the one its scheduler file holds."""
    if not Path(address).is_file():
        return address
    try:
        return json.loads(Path(address).read_text())["address"]
    except (ValueError, KeyError) as exc:
        raise InvalidInput(f"cluster.address {address}: not a Dask scheduler file ({exc}); pass the file "
                           "`dask scheduler --scheduler-file` wrote, or tcp://host:8786") from None


@contextmanager
def task_pool(workers: int, address: str = "", timeout_s: float = 30.0) -> Iterator[TaskPool]:
    """The stage's pool: `workers` local processes, or the Dask cluster at `address`."""
    if not address:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            yield TaskPool(pool, "local", workers)
        return
    from distributed import Client

    where = {"scheduler_file": address} if Path(address).is_file() else {"address": address}
    try:
        client = Client(**where, timeout=timeout_s, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise InvalidInput(f"cluster.address {address}: no Dask scheduler answered in {timeout_s:g} s ({exc}); start"
                           " one (`dask scheduler`, then `dask worker ADDRESS`) or set cluster.address to \"\" for"
                           " the local process pool") from None
    with client:
        count = len(client.scheduler_info()["workers"])
        log.info("running tasks on the Dask cluster at %s (%d workers)", client.scheduler.address, count)
        with client.get_executor(pure=False) as pool:  # pure=False: every task runs, none is deduplicated
            yield TaskPool(pool, f"dask {client.scheduler.address}", count)


# ------------------------------------------------------------------ the record


@dataclass(frozen=True)
class Retry(Config):
    """A task that failed transiently: its name, the attempts it took (or was given), the last error."""

    section = "tasks.retried"

    name: str
    attempts: int
    error: str


@dataclass(frozen=True)
class TaskRecord(Config):
    """The `tasks` entry of a stage report: how many tasks, where they ran, what was retried, how long it took."""

    section = "tasks"

    total: int
    where: str  # "local" (processes of this machine) | "dask tcp://host:port" | what ran them in process
    workers: int
    retried: tuple[Retry, ...] = ()
    seconds: float = 0.0


@dataclass
class TaskLog:
    """Accumulates the maps of one stage run into its `TaskRecord`."""

    total: int = 0
    where: str = ""
    workers: int = 0
    retried: dict[tuple[str, str], Retry] = field(default_factory=dict)  # (map, task) -> its latest retry
    seconds: float = 0.0

    def record(self) -> TaskRecord:
        """The frozen record (seconds rounded to ms)."""
        return TaskRecord(self.total, self.where, self.workers, tuple(self.retried.values()), round(self.seconds, 3))


class TaskFailed(UserError, RuntimeError):
    """A task failed on bad input, or on a transient error after every retry; the message names the task."""


class TaskCrashed(RuntimeError):
    """A task raised an unexpected error (a bug); the message names the task, the cause keeps its traceback."""


def transient_errors() -> tuple[type[BaseException], ...]:
    """Errors worth another attempt: I/O and the network, and a Dask worker lost or its connection closed."""
    errors: tuple[type[BaseException], ...] = (OSError, ConnectionError, TimeoutError)
    try:
        from distributed.comm.core import CommClosedError
        from distributed.scheduler import KilledWorker
    except ImportError:
        return errors
    return (*errors, KilledWorker, CommClosedError)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}".splitlines()[0]


# --------------------------------------------------------------------- the map


def map_tasks(pool: TaskPool, fn: Callable[[Any], Any], items: Iterable[Any], names: Iterable[str], *, retries: int,
              log_to: TaskLog, desc: str, ahead: int = 0) -> Iterator[Any]:
    """`fn(item)` for every item on `pool`, results in item order; transient failures retried `retries` times.

    A bar counts tasks as they complete. `ahead` > 0 bounds the tasks submitted and not yet yielded
    (memory for large results); 0 submits all at once. Raises TaskFailed (input errors, exhausted
    retries) or TaskCrashed (anything else), naming the task by its entry in `names`.
    """
    items, names = list(items), list(names)
    log_to.total += len(items)
    log_to.where, log_to.workers = pool.where, pool.workers
    transient = transient_errors()
    window = ahead or max(len(items), 1)
    attempts = [0] * len(items)
    pending: dict[Future, int] = {}
    finished: dict[int, Any] = {}
    submitted = yielded = 0
    start = time.perf_counter()

    def submit(index: int) -> None:
        attempts[index] += 1
        pending[pool.executor.submit(fn, items[index])] = index

    try:
        with tqdm(total=len(items), desc=desc, unit="task") as bar:
            while yielded < len(items):
                while submitted < len(items) and submitted - yielded < window:
                    submit(submitted)
                    submitted += 1
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    index = pending.pop(future)
                    error = future.exception()
                    if error is None:
                        finished[index] = future.result()
                        bar.update()
                    elif isinstance(error, transient) and not isinstance(error, UserError) and attempts[index] <= retries:
                        log.warning("%s: %s failed (%s); attempt %d of %d", desc, names[index], _describe(error),
                                    attempts[index] + 1, retries + 1)
                        log_to.retried[desc, names[index]] = Retry(names[index], attempts[index] + 1, _describe(error))
                        submit(index)
                    else:
                        raise _failure(desc, names[index], attempts[index], error, transient)
                while yielded in finished:
                    yield finished.pop(yielded)
                    yielded += 1
    finally:
        for future in pending:
            future.cancel()
        log_to.seconds += time.perf_counter() - start


def _failure(desc: str, name: str, attempts: int, error: BaseException,
             transient: tuple[type[BaseException], ...]) -> Exception:
    """The one-line error of a task that failed for good, chained to its cause."""
    if isinstance(error, UserError):
        failed: Exception = TaskFailed(f"{desc}: {name}: {error}")
    elif isinstance(error, transient):
        failed = TaskFailed(f"{desc}: {name} failed {attempts} times, last with {_describe(error)}; check the storage "
                            "or the cluster and run the stage again (cluster.retries sets the attempts)")
    else:
        failed = TaskCrashed(f"{desc}: {name} failed with {_describe(error)}")
    failed.__cause__ = error
    return failed
