"""Benchmark ldm.degradation against the original BSR code (PyPI `bsrgan`) on the same crops, in detail.

    .venv/bin/python -m bench.bench_degradation [--n 200] [--size 256]

Prints, for the same N crops of real photographs (skimage / sklearn samples):
images per second of our `bsr`, `bsr_light` and `bicubic` and of the original
`degradation_bsrgan`, the ratio ours / original, and the distribution (median,
quartiles) of PSNR(bicubic-upsampled LR, HR). The original runs in this process
from bench/.peers (`make bench` installs it; see bench/data.py for its shims).
`make bench` has the short form of this: the `degradation` group of bench/suite.py.
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np

from bench.data import SCALE, import_bsrgan, make_crops, psnr_upsampled


def run_original(crops: np.ndarray) -> tuple[list[float], np.ndarray]:
    """Per-image seconds and LR images of bsrgan's degradation_bsrgan, seeded per crop through random and np.random."""
    blindsr = import_bsrgan()
    lq_patch = crops.shape[1] // SCALE  # the whole LR image: its final random crop cuts nothing
    for i in range(2):  # warm-up
        random.seed(10_000 + i)
        np.random.seed(10_000 + i)
        blindsr.degradation_bsrgan(crops[0].astype(np.float32) / 255.0, sf=SCALE, lq_patchsize=lq_patch)
    seconds, out = [], []
    for i, crop in enumerate(crops):
        random.seed(i)
        np.random.seed(i)
        start = time.perf_counter()
        lq, _ = blindsr.degradation_bsrgan(crop.astype(np.float32) / 255.0, sf=SCALE, lq_patchsize=lq_patch)
        seconds.append(time.perf_counter() - start)
        out.append(np.uint8((lq.clip(0, 1) * 255.0).round()))
    return seconds, np.stack(out)


def run_ours(crops: np.ndarray, variant: str) -> tuple[list[float], np.ndarray]:
    """Per-image seconds and LR images of ldm.degradation.degrade, seed = crop index."""
    from ldm.degradation import degrade

    degrade(crops[0], scale=SCALE, variant=variant, seed=10_000)  # warm-up
    seconds, out = [], []
    for i, crop in enumerate(crops):
        t0 = time.perf_counter()
        lr, _ = degrade(crop, scale=SCALE, variant=variant, seed=i)
        seconds.append(time.perf_counter() - t0)
        out.append(lr)
    return seconds, np.stack(out)


def quartiles(values: list[float]) -> str:
    """'median [q1, q3]' with two decimals."""
    q1, med, q3 = np.percentile(values, [25, 50, 75])
    return f"{med:6.2f} [{q1:6.2f}, {q3:6.2f}]"


def main() -> None:
    """Time ours and the original on the same crops; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="number of crops (default 200)")
    parser.add_argument("--size", type=int, default=256, help="crop side in px (default 256)")
    parser.add_argument("--no-original", action="store_true", help="skip the bsrgan comparison")
    parser.add_argument("--cv2-threads", type=int, default=None, help="cv2.setNumThreads for ours (default: cv2's)")
    args = parser.parse_args()
    import cv2

    if args.cv2_threads is not None:
        cv2.setNumThreads(args.cv2_threads)
    crops = make_crops(args.n, args.size)
    rows: dict[str, tuple[list[float], np.ndarray]] = {}
    for variant in ("bsr", "bsr_light", "bicubic"):
        rows[variant] = run_ours(crops, variant)
    if not args.no_original:
        rows["original bsrgan"] = run_original(crops)

    print(f"{args.n} crops of {args.size} x {args.size}, scale {SCALE}, cv2 threads {cv2.getNumThreads()}")
    print(f"{'degradation':<17} {'img/s':>8} {'ms/img':>8} {'median':>8}   PSNR(bicubic-up LR, HR) dB: median [q1, q3]")
    for name, (seconds, lrs) in rows.items():
        psnr = [psnr_upsampled(lr, hr) for lr, hr in zip(lrs, crops)]
        total, median_ms = sum(seconds), 1e3 * float(np.median(seconds))
        print(f"{name:<17} {len(seconds) / total:8.1f} {1e3 * total / len(seconds):8.2f} {median_ms:8.2f}   {quartiles(psnr)}")
    if "original bsrgan" in rows:
        base = len(rows["original bsrgan"][0]) / sum(rows["original bsrgan"][0])
        for variant in ("bsr", "bsr_light"):
            ratio = len(rows[variant][0]) / sum(rows[variant][0]) / base
            print(f"throughput ratio ours/original, {variant}: {ratio:.1f}x")
        med_ours = np.median([psnr_upsampled(lr, hr) for lr, hr in zip(rows["bsr"][1], crops)])
        med_orig = np.median([psnr_upsampled(lr, hr) for lr, hr in zip(rows["original bsrgan"][1], crops)])
        print(f"PSNR median bsr - original: {med_ours - med_orig:+.2f} dB (acceptance: within 1 dB)")


if __name__ == "__main__":
    main()
