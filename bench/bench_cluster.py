"""The degrade stage serially, on the local process pool and on a Dask cluster: wall time and identical bytes.

    .venv/bin/python bench/bench_cluster.py                  # params.yaml's data, 2 workers, ~2 min on 2 cores
    .venv/bin/python bench/bench_cluster.py --workers 4

Cuts the default data once (the `download` stage with params.yaml's `data` and
`download` sections), then runs `degrade` with 1 local process, with `--workers`
local processes, and on a `LocalCluster` of `--workers` worker processes (one
thread each; its start-up is not timed), and prints each wall time and whether
the pair shards are byte-identical to the serial run's. Run it alone: the
machine's cores are shared.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import yaml
from distributed import LocalCluster

from stages import degrade, download
from stages.params import parse_params

ROOT = Path(__file__).resolve().parent.parent


def _degrade(raw: dict, images: Path, out: Path, workers: int, address: str = "") -> float:
    params = parse_params({**raw, "degrade": {**raw.get("degrade", {}), "workers": workers},
                           "cluster": {"address": address}})
    start = time.perf_counter()
    degrade.run(params, degrade.Paths(images, out / "pairs", out / "degrade.json", out / "degrade.png"))
    return round(time.perf_counter() - start, 1)


def _bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.tar"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    raw = {k: v for k, v in yaml.safe_load((ROOT / "params.yaml").read_text()).items() if k in ("data", "download",
                                                                                                  "degrade")}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        download.run(parse_params(raw), download.Paths(root / "images", root / "download.json", root / "cache"))
        rows = {"serial_s": _degrade(raw, root / "images", root / "serial", 1),
                f"local_{args.workers}_s": _degrade(raw, root / "images", root / "local", args.workers)}
        with LocalCluster(n_workers=args.workers, threads_per_worker=1, dashboard_address=None) as cluster:
            rows[f"dask_{args.workers}_s"] = _degrade(raw, root / "images", root / "dask", args.workers,
                                                      cluster.scheduler_address)
        serial = _bytes(root / "serial" / "pairs")
        rows["shards"] = len(serial)
        rows["identical"] = all(_bytes(root / name / "pairs") == serial for name in ("local", "dask"))
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
