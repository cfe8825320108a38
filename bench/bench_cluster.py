"""degrade and cache_latents serially, on the local process pool and on a Dask cluster: wall time, identical bytes.

    .venv/bin/python bench/bench_cluster.py                  # params.yaml's data, 2 workers, ~2 min on 2 cores
    .venv/bin/python bench/bench_cluster.py --workers 4

Cuts the default data once (the `download` stage with params.yaml's `data` and
`download` sections), then runs `degrade` and `cache_latents` (an untrained
`autoencoder.preset`: the encoder's cost, not its quality) with 1 local process
(cache_latents: Lightning's predict loop), with `--workers` local processes, and
on a `LocalCluster` of `--workers` worker processes (one thread each; its
start-up is not timed), and prints each wall time and whether the shards (and
stats.json) are byte-identical to the serial run's. Run it alone: the machine's
cores are shared.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import yaml
from distributed import LocalCluster

from ldm.autoencoder import build_autoencoder
from ldm.autoencoder.checkpoint import AutoencoderCard, save_autoencoder
from stages import cache_latents, degrade, download
from stages.params import parse_params

ROOT = Path(__file__).resolve().parent.parent


def _degrade(raw: dict, images: Path, out: Path, workers: int, address: str = "") -> float:
    params = parse_params({**raw, "degrade": {**raw.get("degrade", {}), "workers": workers},
                           "cluster": {"address": address}})
    start = time.perf_counter()
    degrade.run(params, degrade.Paths(images, out / "pairs", out / "degrade.json", out / "degrade.png"))
    return round(time.perf_counter() - start, 1)


def _cache(raw: dict, data: Path, model: Path, out: Path, workers: int, address: str = "") -> float:
    params = parse_params({**raw, "cache_latents": {"workers": workers, "threads": 1, "accelerator": "cpu", "label_maps": False},
                           "cluster": {"address": address}})
    start = time.perf_counter()
    cache_latents.run(params, cache_latents.Paths(data / "images", data / "serial" / "pairs", model, out / "latents",
                                                  out / "cache.json"))
    return round(time.perf_counter() - start, 1)


def _autoencoder(raw: dict, folder: Path) -> Path:
    """An untrained autoencoder of params.yaml's preset, saved as train_autoencoder saves one."""
    params = parse_params(raw)
    torch.manual_seed(0)
    model = build_autoencoder(params.autoencoder.preset)
    save_autoencoder(folder, model, AutoencoderCard(model=model.config, preset=params.autoencoder.preset,
                                                    resolution=params.data.resolution, data_sha256="", lineage={}))
    return folder


def _bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    raw = {k: v for k, v in yaml.safe_load((ROOT / "params.yaml").read_text()).items() if k in ("data", "download",
                                                                                                  "degrade", "autoencoder")}
    runs = {"serial": 1, "local": args.workers}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        download.run(parse_params(raw), download.Paths(root / "images", root / "download.json", root / "cache"))
        model = _autoencoder(raw, root / "autoencoder")
        rows: dict = {}
        with LocalCluster(n_workers=args.workers, threads_per_worker=1, dashboard_address=None) as cluster:
            for name, workers in (*runs.items(), ("dask", args.workers)):
                address = cluster.scheduler_address if name == "dask" else ""
                rows[f"degrade_{name}_s"] = _degrade(raw, root / "images", root / name, workers, address)
                rows[f"cache_latents_{name}_s"] = _cache(raw, root, model, root / name, workers, address)
        for stage, folder in (("degrade", "pairs"), ("cache_latents", "latents")):
            serial = _bytes(root / "serial" / folder)
            rows[f"{stage}_files"] = len(serial)
            rows[f"{stage}_identical"] = all(_bytes(root / name / folder) == serial for name in ("local", "dask"))
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
