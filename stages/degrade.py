"""Stage `degrade`: image shards -> LR/HR pair shards for super-resolution (Sec. C.7.1).

Each image is degraded `degrade.degradations_per_image` times with the chosen
variant (`bsr`, the paper's moderated `bsr_light`, or `bicubic`). The seed of a
degradation is a hash of the global seed, the sample key and the repeat index,
so the output does not depend on the number of workers or on shard order.
A pair `KEY_dN` holds the HR and LR images, the degradation record with the
source sample's metadata, and the source's class and caption (`PairSample`).
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ldm.data import remote
from ldm.data.grids import save_grid
from ldm.data.location import Location
from ldm.data.schema import ImageSample, PairSample
from ldm.data.shards import MANIFEST, AtomicFolder, ShardInfo, read_shards, sha256_file, write_manifest, write_shard
from ldm.data.survey import survey
from ldm.degradation import MIN_LR_SIDE, DegradationError, degrade
from ldm.errors import InputNotFound
from ldm.metrics.quality import psnr
from ldm.parallel import TaskLog, map_tasks, task_pool
from ldm.reports import quantiles, write_json
from ldm.seeding import key_seed
from ldm.storage.settings import S3Settings
from stages.cli import arg, stage_main
from stages.params import Params, lineage, to_config

log = logging.getLogger("stages.degrade")


@dataclass(frozen=True)
class Paths:
    """The stage's input shard folder and its outputs."""

    images: Path = arg("folder of {train,val}-NNNNNN.tar image shards")
    out: Location = arg("output folder or s3://bucket/prefix of pair shards (+ shards.json)")
    report: Path = arg("output JSON: operations drawn, PSNR of bicubic-up LR, lineage")
    grid: Path = arg("output PNG: HR | bicubic-upsampled LR pairs")


def sample_seed(seed: int, key: str, repeat: int) -> int:
    """The seed of one degradation: a hash of (global seed, sample key, repeat index)."""
    return key_seed(seed, f"{key}:{repeat}")


def psnr_uint8(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two [H x W x 3] uint8 images (capped, see ldm.metrics.quality)."""
    as_batch = lambda x: torch.from_numpy(x).permute(2, 0, 1)[None]  # noqa: E731 - (1, 3, H, W)
    return float(psnr(as_batch(a), as_batch(b), data_range=255.0)[0])


def bicubic_up(lr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """[h x w x 3] uint8 -> [H x W x 3] uint8, bicubic (the baseline a person compares against)."""
    return np.asarray(Image.fromarray(lr).resize((size[1], size[0]), Image.Resampling.BICUBIC))


def _pairs(source: str, cfg: dict, stats: dict) -> Iterator[PairSample]:
    """Every pair of one image shard, tallying the degradations drawn into `stats`."""
    for raw in read_shards([source]):
        sample = ImageSample.decode(raw)
        meta = {"source_key": sample.key, **sample.meta}
        for repeat in range(cfg["repeats"]):
            lr, record = degrade(sample.image, scale=cfg["scale"], variant=cfg["variant"],
                                 seed=sample_seed(cfg["seed"], sample.key, repeat))
            hr = _crop_like(sample.image, lr, cfg["scale"])
            _tally(stats, record)
            stats["psnr"].append(psnr_uint8(bicubic_up(lr, hr.shape[:2]), hr))
            yield PairSample(key=f"{sample.key}_d{repeat}", hr=hr, lr=lr, label=sample.label, caption=sample.caption,
                             meta={**meta, "degradation": record})


def _shard_job(job: tuple[str, str, dict]) -> dict:
    """Degrade every sample of one shard into `out`; return its statistics."""
    source, out, cfg = job
    stats: dict = {"ops": Counter(), "blur_ksize": Counter(), "jpeg_quality": Counter(), "noise": [], "psnr": []}
    info = write_shard(out, _pairs(source, cfg, stats))
    return {**stats, "samples": info.samples, "sha256": info.sha256}


def _crop_like(hr: np.ndarray, lr: np.ndarray, scale: int) -> np.ndarray:
    """The centred part of `hr` that `lr` covers (equal to `hr` when H, W are multiples of scale)."""
    height, width = lr.shape[0] * scale, lr.shape[1] * scale
    top, left = (hr.shape[0] - height) // 2, (hr.shape[1] - width) // 2
    return np.ascontiguousarray(hr[top : top + height, left : left + width])


def _tally(stats: dict, record: dict) -> None:
    for op in record["ops"]:
        stats["ops"][op["op"] + (f":{op['kind']}" if "kind" in op else "")] += 1
        if op["op"] == "blur":
            stats["blur_ksize"][int(op["ksize"])] += 1
        elif op["op"] == "jpeg":
            stats["jpeg_quality"][int(op["quality"])] += 1
        elif op["op"] == "noise":
            stats["noise"].append(float(op["sigma"]))


def _grid(pairs: Path, count: int, total: int, path: Path) -> None:
    """A PNG of `count` val pairs spread over the split, each HR | bicubic-upsampled LR."""
    tiles = []
    step = max(1, total // count)
    for raw in islice(read_shards(sorted(pairs.glob("val-*.tar"))), 0, None, step):
        pair = PairSample.decode(raw)
        tiles += [pair.hr, bicubic_up(pair.lr, pair.hr.shape[:2])]
        if len(tiles) >= 2 * count:
            break
    save_grid(torch.from_numpy(np.stack(tiles)).permute(0, 3, 1, 2), path, nrow=8)  # (2N, 3, H, W)


def run(params: Params, paths: Paths) -> dict:
    """Degrade every image shard; write pair shards, the report and the grid."""
    cfg = params.degrade
    if params.data.resolution < MIN_LR_SIDE * cfg.scale:
        raise DegradationError(f"degrade.scale {cfg.scale} needs images of at least {MIN_LR_SIDE * cfg.scale} px "
                               f"(LR side >= {MIN_LR_SIDE}); data.resolution is {params.data.resolution}")
    sources = sorted(paths.images.glob("*.tar"))
    if not sources:
        raise InputNotFound(f"{paths.images}: no image shards; run the download stage first (dvc repro download)")
    corrupt = survey(sources, params.data.on_corrupt)
    sources = corrupt.keep(sources)
    job_cfg = {"seed": cfg.seed, "scale": cfg.scale, "variant": cfg.variant, "repeats": cfg.degradations_per_image}
    merged: dict = {"ops": Counter(), "blur_ksize": Counter(), "jpeg_quality": Counter(), "noise": [], "psnr": []}
    remote.configure(to_config(params.storage.s3, S3Settings))
    shards, counts, written, tasks = {}, Counter(), [], TaskLog()
    with AtomicFolder(paths.out, marker=MANIFEST) as staging:
        jobs = [(str(src.resolve()), str(Path(staging).resolve() / src.name), job_cfg) for src in sources]  # a worker's cwd is its own
        with task_pool(cfg.workers, params.cluster.address, params.cluster.timeout_s) as pool:
            results = map_tasks(pool, _shard_job, jobs, [src.name for src in sources], retries=params.cluster.retries,
                                log_to=tasks, desc="degrade")
            for src, stats in zip(sources, results):
                shards[src.name] = {"samples": stats["samples"], "sha256": stats["sha256"]}
                written.append(ShardInfo(src.name, stats["samples"], stats["sha256"]))
                counts[src.name.split("-")[0]] += stats["samples"]
                for name in ("ops", "blur_ksize", "jpeg_quality"):
                    merged[name].update(stats[name])
                merged["noise"] += stats["noise"]
                merged["psnr"] += stats["psnr"]
        write_manifest(staging, written)
        _grid(staging, cfg.grid_pairs, counts["val"], paths.grid)
    report = {
        "stage": "degrade",
        "variant": cfg.variant,
        "scale": cfg.scale,
        "counts": dict(sorted(counts.items())),
        "shards": shards,
        "operations": dict(sorted(merged["ops"].items())),
        "blur_kernel_sizes": {str(k): v for k, v in sorted(merged["blur_ksize"].items())},
        "jpeg_qualities": {str(k): v for k, v in sorted(merged["jpeg_quality"].items())},
        "noise_sigma_255": quantiles(merged["noise"]),
        "psnr_bicubic_up_db": quantiles(merged["psnr"]),
        "corrupt": corrupt.to_dict(),
        "tasks": tasks.record().to_dict(),
        "lineage": lineage({"data": params.data, "degrade": cfg}, {src.name: sha256_file(src) for src in sources}),
    }
    write_json(paths.report, report)
    log.info("wrote %s pairs (%s) to %s; median PSNR of bicubic-up LR %.2f dB", sum(counts.values()), cfg.variant, paths.out,
             report["psnr_bicubic_up_db"].get("median", float("nan")))
    return report


main = stage_main(run, Paths, __doc__)


if __name__ == "__main__":
    sys.exit(main())
