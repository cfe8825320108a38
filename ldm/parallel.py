"""Where the data stages' per-shard (per-file) tasks run: a local process pool, or a Dask cluster.

Both are a `concurrent.futures.Executor`: `ProcessPoolExecutor(workers)` on this
machine, or a `distributed.Client`'s executor when a scheduler address is given
(`cluster.address` in params.yaml: `tcp://host:8786`, or a scheduler file). The
stages hand each task its inputs and seed and gather results in task order, so
the output bytes do not depend on which pool ran them or on its size. Tasks
that write files write to the paths they are given: Dask workers must see the
workspace (the same machine or a shared filesystem).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from ldm.errors import InvalidInput

log = logging.getLogger(__name__)


@contextmanager
def task_pool(workers: int, address: str = "", timeout_s: float = 30.0) -> Iterator[Executor]:
    """An executor for the stage's tasks: `workers` local processes, or the Dask cluster at `address`."""
    if not address:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            yield pool
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
        log.info("running tasks on the Dask cluster at %s (%d workers)", client.scheduler.address,
                 len(client.scheduler_info()["workers"]))
        with client.get_executor(pure=False) as pool:  # pure=False: every task runs, none is deduplicated
            yield pool
