"""Benchmark the training loaders: samples per second per DataLoader worker count, and the workers a GPU needs.

    .venv/bin/python bench/bench_loader.py                     # workers 0 1 2; a batch of 48 every 0.5 s
    .venv/bin/python bench/bench_loader.py --workers 0 2 4 8 --gpu-batch 64 --gpu-step-s 0.25

Writes synthetic but realistic shards into a temporary folder, through the one shard writer:

- images   (train_autoencoder): 256 x 256 PNG crops of the embedded photographs, multi-scale as `download` cuts them;
- f8       (train_ldm): latents [4 x 32 x 32] float16, what kl-f8 caches for 256 px images;
- f4       (train_ldm): latents [3 x 64 x 64] float16 (kl-f4, vq-f4);
- sr-f4    (train_sr): f4 latents with their 64 x 64 LR image (PNG), LDM-SR's 4x pairs;

then times the stages' training loader (`image_loader` / `latent_loader`: endless, shuffle buffer 1000, batches
of --gpu-batch) for each worker count: samples per second after two warm-up batches, and the seconds to the first
batch (worker start-up, shuffle buffer fill); the main process runs --threads torch threads. It also times the raw stream alone (tar reads and the shuffle
buffer, no decoding) in one process: every worker reads every raw sample and decodes one batch in W, so with a
core per worker R(W) = W / (t_dec + W t_raw), where t_raw = 1 / raw rate and t_dec = 1 / R(1) - t_raw. The
workers a GPU step of --gpu-batch samples every --gpu-step-s seconds needs (T samples/s) follow:
W = ceil(T t_dec / (1 - T t_raw)), none when T t_raw >= 1. Prints a markdown table; writes JSON to --json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader

from ldm.data.embedded import PHOTOS, crop_plan, cut_crop, load_photo
from ldm.data.images import crop_resize
from ldm.data.latents import latent_loader
from ldm.data.loader import image_loader, raw_samples
from ldm.data.loader_config import LoaderSettings
from ldm.data.schema import ImageSample, LatentSample
from ldm.data.shards import write_split

ROOT = Path(__file__).resolve().parent.parent
KINDS = {  # kind -> (latent shape (C, h, w) or None for images, LR side or None, what trains on it)
    "images": (None, None, "train_autoencoder"),
    "f8": ((4, 32, 32), None, "train_ldm"),
    "f4": ((3, 64, 64), None, "train_ldm"),
    "sr-f4": ((3, 64, 64), 64, "train_sr"),
}
SHUFFLE = 1000  # the training stages' default shuffle_buffer


def _crops(count: int, resolution: int) -> list[np.ndarray]:
    """`count` multi-scale crops [r x r x 3] uint8 of the embedded photographs, all classes mixed."""
    images = [load_photo(photo) for photo in PHOTOS]
    plan = crop_plan(images, "train", count, resolution, seed=0, val_fraction=0.25, max_scale=4.0)
    order = np.random.default_rng(0).permutation(len(plan))
    return [cut_crop(images, plan[i], resolution)["image"] for i in order]


def _samples(kind: str, crops: list[np.ndarray]) -> list[ImageSample | LatentSample]:
    """The shard samples of `kind`: the crops themselves, or latents (with the crops' LR images for SR)."""
    shape, lr_side, _ = KINDS[kind]
    rng = np.random.default_rng(1)
    if shape is None:
        return [ImageSample(f"s{i:05d}", crop, i % len(PHOTOS), "a photo") for i, crop in enumerate(crops)]
    out = []
    for i, crop in enumerate(crops):
        lr = crop_resize(crop, (0, 0, crop.shape[0]), lr_side) if lr_side else None
        latent = rng.standard_normal(shape).astype(np.float16)
        out.append(LatentSample(f"s{i:05d}", latent, i % len(PHOTOS), "a photo", lr=lr))
    return out


def _loader(kind: str, urls: list[str], workers: int, batch: int) -> DataLoader:
    settings = LoaderSettings(num_workers=workers, prefetch_factor=2, pin_memory=False)
    if KINDS[kind][0] is None:
        return image_loader(urls, batch_size=batch, settings=settings, shuffle=SHUFFLE, endless=True)
    return latent_loader(urls, scale_factor=1.0, batch_size=batch, settings=settings, shuffle=SHUFFLE, endless=True)


def _time_loader(loader: DataLoader, batch: int, seconds: float) -> tuple[float, float]:
    """(samples/s after two warm-up batches over about `seconds`, seconds to the first batch)."""
    start = time.perf_counter()
    iterator = iter(loader)
    next(iterator)
    first = time.perf_counter() - start
    next(iterator)
    count, start = 0, time.perf_counter()
    while count < 3 or time.perf_counter() - start < seconds:
        next(iterator)
        count += 1
    rate = count * batch / (time.perf_counter() - start)
    del iterator  # stops the persistent workers
    return rate, first


def _time_raw(urls: list[str], seconds: float) -> float:
    """Samples/s of the raw stream in one process: tar reads and the shuffle buffer, nothing decoded."""
    stream = iter(wds.DataPipeline(*raw_samples(urls, shuffle=SHUFFLE, split_by_worker=False)).repeat())
    for _ in range(SHUFFLE // 10):
        next(stream)
    count, start = 0, time.perf_counter()
    while count < 1000 or time.perf_counter() - start < seconds:
        next(stream)
        count += 1
    return count / (time.perf_counter() - start)


def _needed(target: float, one_worker: float, raw: float) -> int | None:
    """Workers that feed `target` samples/s by R(W) = W / (t_dec + W t_raw); None when no count can."""
    t_raw = 1.0 / raw
    t_dec = max(1.0 / one_worker - t_raw, 0.0)
    if target * t_raw >= 1.0:
        return None
    return max(1, math.ceil(target * t_dec / (1.0 - target * t_raw)))


def _bench_kind(kind: str, crops: list[np.ndarray], folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Write `kind`'s shards, time the raw stream and the loader per worker count."""
    infos = write_split(_samples(kind, crops), folder / kind, "train", args.shard_size)
    urls = [str(folder / kind / info.name) for info in infos]
    size = sum((folder / kind / info.name).stat().st_size for info in infos) / len(crops)
    row: dict[str, Any] = {"kind": kind, "stage": KINDS[kind][2], "bytes_per_sample": round(size),
                           "raw_samples_per_s": _time_raw(urls, args.seconds), "workers": {}}
    for workers in args.workers:
        rate, first = _time_loader(_loader(kind, urls, workers, args.gpu_batch), args.gpu_batch, args.seconds)
        row["workers"][str(workers)] = {"samples_per_s": rate, "first_batch_s": first}
        print(f"  {kind:<7} {workers} workers: {rate:8.1f} samples/s (first batch after {first:.2f} s)", flush=True)
    one = row["workers"].get("1", row["workers"][str(args.workers[0])])["samples_per_s"]
    row["workers_needed"] = _needed(args.gpu_batch / args.gpu_step_s, one, row["raw_samples_per_s"])
    return row


def _table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """The results as a markdown table: samples/s per worker count, the raw ceiling, the workers needed."""
    target = args.gpu_batch / args.gpu_step_s
    head = ["data (stage)", "KB/sample", *[f"{w} workers" for w in args.workers], "raw read (ceiling)",
            f"workers for {target:g}/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        rates = [f"{row['workers'][str(w)]['samples_per_s']:.0f}" for w in args.workers]
        needed = "none (raw read too slow)" if row["workers_needed"] is None else str(row["workers_needed"])
        cells = [f"{row['kind']} ({row['stage']})", f"{row['bytes_per_sample'] / 1024:.1f}", *rates,
                 f"{row['raw_samples_per_s']:.0f}", needed]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="DataLoader worker counts to time")
    parser.add_argument("--kinds", nargs="+", choices=list(KINDS), default=list(KINDS))
    parser.add_argument("--samples", type=int, default=480, help="samples written per kind (the loader repeats them)")
    parser.add_argument("--resolution", type=int, default=256, help="image side in pixels")
    parser.add_argument("--shard-size", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per measurement (after warm-up)")
    parser.add_argument("--gpu-batch", type=int, default=48, help="samples per GPU step (the paper's batch: 48)")
    parser.add_argument("--gpu-step-s", type=float, default=0.5, help="seconds per GPU step")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the main process (workers use 1)")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "loader.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)  # with 0 workers the main process decodes; 2 threads on 2 busy cores thrash
    crops = _crops(args.samples, args.resolution)
    target = args.gpu_batch / args.gpu_step_s
    load = os.getloadavg()[0]  # other processes on the cores skew every rate
    print(f"loader samples/s, batch {args.gpu_batch}, shuffle buffer {SHUFFLE}; GPU target {args.gpu_batch} samples "
          f"every {args.gpu_step_s} s = {target:g} samples/s; {os.cpu_count()} cores, load average {load:.1f}", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        rows = [_bench_kind(kind, crops, Path(folder), args) for kind in args.kinds]
    print(_table(rows, args))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    machine = {"cores": os.cpu_count(), "load_average_before": load}
    args.json.write_text(json.dumps({"settings": settings, "machine": machine, "target_samples_per_s": target,
                                     "results": rows}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
