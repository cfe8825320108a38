"""Stage `degrade`: image shards -> LR/HR pair shards for super-resolution (Sec. C.7.1).

    python -m stages.degrade --params params.yaml --images data/images --out data/pairs \
        --report reports/degrade.json --grid reports/degrade.png

Each image is degraded `degrade.degradations_per_image` times with the chosen
variant (`bsr`, the paper's moderated `bsr_light`, or `bicubic`). The seed of a
degradation is a hash of the global seed, the sample key and the repeat index,
so the output does not depend on the number of workers or on shard order.
A sample `KEY_dN` holds `hr.png`, `lr.png`, `json` (the degradation record and
the source sample's metadata), and the source's `cls` and `txt`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import torch
import webdataset as wds
from PIL import Image
from torchvision.utils import make_grid
from tqdm import tqdm

from ldm.data.images import decode_image, encode_png
from ldm.data.shards import AtomicFolder, encode_json, sha256_file
from ldm.degradation import MIN_LR_SIDE, DegradationError, degrade
from stages.lineage import lineage, run_cli, write_json
from stages.params import Params, ParamsError, load_params

log = logging.getLogger("stages.degrade")


@dataclass(frozen=True)
class Paths:
    """The stage's input shard folder and its outputs."""

    images: Path
    out: Path
    report: Path
    grid: Path


def sample_seed(seed: int, key: str, repeat: int) -> int:
    """The seed of one degradation: a hash of (global seed, sample key, repeat index)."""
    digest = hashlib.sha256(f"{seed}:{key}:{repeat}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images, capped at 100 dB (equal images, e.g. a flat black sky)."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return min(100.0, float(10 * np.log10(255.0**2 / max(mse, 1e-12))))


def bicubic_up(lr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """[h x w x 3] uint8 -> [H x W x 3] uint8, bicubic (the baseline a person compares against)."""
    return np.asarray(Image.fromarray(lr).resize((size[1], size[0]), Image.Resampling.BICUBIC))


def _shard_job(job: tuple[str, str, dict]) -> dict:
    """Degrade every sample of one shard into `out`; return its statistics."""
    source, out, cfg = job
    stats: dict = {"ops": Counter(), "blur_ksize": Counter(), "jpeg_quality": Counter(), "noise": [], "psnr": [], "samples": 0}
    with open(out, "wb") as stream:
        writer = wds.TarWriter(stream, user="ldm", group="ldm", mode=0o644, mtime=0.0, encoder=False)
        for sample in wds.WebDataset(source, shardshuffle=False, empty_check=False):
            key = sample["__key__"]
            hr, _ = decode_image(sample["png"])
            meta = {"source_key": key, **_json(sample)}
            for repeat in range(cfg["repeats"]):
                seed = sample_seed(cfg["seed"], key, repeat)
                lr, record = degrade(hr, scale=cfg["scale"], variant=cfg["variant"], seed=seed)
                hr_used = _crop_like(hr, lr, cfg["scale"])
                writer.write({
                    "__key__": f"{key}_d{repeat}",
                    "hr.png": encode_png(hr_used),
                    "lr.png": encode_png(lr),
                    "json": encode_json({**meta, "degradation": record}),
                    "cls": sample["cls"],
                    "txt": sample["txt"],
                })
                _tally(stats, record)
                stats["psnr"].append(psnr(bicubic_up(lr, hr_used.shape[:2]), hr_used))
                stats["samples"] += 1
        writer.close()
    stats["sha256"] = sha256_file(out)
    return stats


def _json(sample: dict) -> dict:
    return json.loads(sample["json"]) if "json" in sample else {}


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


def _quantiles(values: list[float]) -> dict:
    if not values:
        return {}
    q = np.percentile(np.asarray(values), [0, 25, 50, 75, 100])
    return {name: round(float(v), 4) for name, v in zip(("min", "p25", "median", "p75", "max"), q)}


def _grid(pairs: Path, count: int, total: int, path: Path) -> None:
    """A PNG of `count` val pairs spread over the split, each HR | bicubic-upsampled LR."""
    tiles = []
    step = max(1, total // count)
    samples = wds.WebDataset(sorted(str(p) for p in pairs.glob("val-*.tar")), shardshuffle=False, empty_check=False)
    for sample in islice(samples, 0, None, step):
        hr, _ = decode_image(sample["hr.png"])
        lr, _ = decode_image(sample["lr.png"])
        tiles += [hr, bicubic_up(lr, hr.shape[:2])]
        if len(tiles) >= 2 * count:
            break
    batch = torch.from_numpy(np.stack(tiles)).permute(0, 3, 1, 2)  # (2N, 3, H, W)
    grid = make_grid(batch, nrow=8, padding=2, pad_value=255)  # (3, H', W')
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid.permute(1, 2, 0).numpy()).save(path)


def run(params: Params, paths: Paths) -> dict:
    """Degrade every image shard; write pair shards, the report and the grid."""
    cfg = params.degrade
    if params.data.resolution < MIN_LR_SIDE * cfg.scale:
        raise DegradationError(f"degrade.scale {cfg.scale} needs images of at least {MIN_LR_SIDE * cfg.scale} px "
                               f"(LR side >= {MIN_LR_SIDE}); data.resolution is {params.data.resolution}")
    sources = sorted(paths.images.glob("*.tar"))
    if not sources:
        raise FileNotFoundError(f"{paths.images}: no image shards; run the download stage first (dvc repro download)")
    job_cfg = {"seed": cfg.seed, "scale": cfg.scale, "variant": cfg.variant, "repeats": cfg.degradations_per_image}
    merged: dict = {"ops": Counter(), "blur_ksize": Counter(), "jpeg_quality": Counter(), "noise": [], "psnr": []}
    shards, counts = {}, Counter()
    with AtomicFolder(paths.out) as staging:
        jobs = [(str(src), str(staging / src.name), job_cfg) for src in sources]
        with ProcessPoolExecutor(max_workers=cfg.workers) as pool:
            for src, stats in tqdm(zip(sources, pool.map(_shard_job, jobs)), total=len(jobs), desc="degrade", unit="shard"):
                shards[src.name] = {"samples": stats["samples"], "sha256": stats["sha256"]}
                counts[src.name.split("-")[0]] += stats["samples"]
                for name in ("ops", "blur_ksize", "jpeg_quality"):
                    merged[name].update(stats[name])
                merged["noise"] += stats["noise"]
                merged["psnr"] += stats["psnr"]
    _grid(paths.out, cfg.grid_pairs, counts["val"], paths.grid)
    report = {
        "stage": "degrade",
        "variant": cfg.variant,
        "scale": cfg.scale,
        "counts": dict(sorted(counts.items())),
        "shards": shards,
        "operations": dict(sorted(merged["ops"].items())),
        "blur_kernel_sizes": {str(k): v for k, v in sorted(merged["blur_ksize"].items())},
        "jpeg_qualities": {str(k): v for k, v in sorted(merged["jpeg_quality"].items())},
        "noise_sigma_255": _quantiles(merged["noise"]),
        "psnr_bicubic_up_db": _quantiles(merged["psnr"]),
        "lineage": lineage({"data": params.data, "degrade": cfg}, {src.name: sha256_file(src) for src in sources}),
    }
    write_json(paths.report, report)
    log.info("wrote %s pairs (%s) to %s; median PSNR of bicubic-up LR %.2f dB", sum(counts.values()), cfg.variant, paths.out,
             report["psnr_bicubic_up_db"].get("median", float("nan")))
    return report


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; user errors end with one line and exit code 2."""
    parser = argparse.ArgumentParser(prog="python -m stages.degrade", description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    parser.add_argument("--images", default="data/images", type=Path, help="image shard folder (default: %(default)s)")
    parser.add_argument("--out", default="data/pairs", type=Path, help="pair shard folder (default: %(default)s)")
    parser.add_argument("--report", default="reports/degrade.json", type=Path, help="report (default: %(default)s)")
    parser.add_argument("--grid", default="reports/degrade.png", type=Path, help="HR | LR grid PNG (default: %(default)s)")
    args = parser.parse_args(argv)
    paths = Paths(args.images, args.out, args.report, args.grid)
    return run_cli(lambda: run(load_params(args.params), paths), (ParamsError, DegradationError, FileNotFoundError), log)


if __name__ == "__main__":
    sys.exit(main())
