"""Benchmark ldm.degradation against the original BSR code (PyPI `bsrgan`) on the same crops.

    .venv/bin/python bench/bench_degradation.py [--n 200] [--size 256]

Prints, for the same N crops of real photographs (skimage / sklearn samples):
images per second of our `bsr`, `bsr_light` and `bicubic` and of the original
`degradation_bsrgan`, the ratio ours / original, and the distribution (median,
quartiles) of PSNR(bicubic-upsampled LR, HR). The original runs in its own venv
at bench/.venv-bsrgan (created on first use; it needs scipy < 1.14 and torch),
in a subprocess that re-runs this file with --child.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
VENV = BENCH_DIR / ".venv-bsrgan"
# bsrgan 0.1.5 declares numpy, scipy, opencv_python, torch, torchvision, matplotlib,
# requests, tqdm; it needs scipy.interpolate.interp2d (removed in SciPy 1.14).
# torch / torchvision: the pair that lies on this machine's disk (see STACK.md).
VENV_REQUIREMENTS = ["bsrgan==0.1.5", "scipy>=1.11,<1.14", "torch==2.14.1", "torchvision==0.29.1"]
SCALE = 4


# ---------------------------------------------------------------- child: the original code


def run_original(src: str, dst: str) -> None:
    """Child process (bsrgan venv): degrade every crop in `src` with degradation_bsrgan."""
    import random

    import scipy

    scipy.finfo = np.finfo  # bsrgan's fspecial calls scipy.finfo, gone from modern SciPy
    from bsrgan.utils import utils_blindsr

    crops = np.load(src)
    lq_patch = crops.shape[1] // SCALE  # the whole LR image: random_crop then cuts nothing
    warm = crops[0].astype(np.float32) / 255.0
    for i in range(2):
        random.seed(10_000 + i)
        np.random.seed(10_000 + i)
        utils_blindsr.degradation_bsrgan(warm, sf=SCALE, lq_patchsize=lq_patch)
    out, seconds = [], []
    for i, crop in enumerate(crops):
        img = crop.astype(np.float32) / 255.0  # the original works on float [0, 1]
        random.seed(i)  # it draws from the global random and np.random
        np.random.seed(i)
        t0 = time.perf_counter()
        lq, _ = utils_blindsr.degradation_bsrgan(img, sf=SCALE, lq_patchsize=lq_patch)
        seconds.append(time.perf_counter() - t0)
        out.append(np.uint8((lq.clip(0, 1) * 255.0).round()))
    np.save(dst, np.stack(out))
    print(json.dumps({"seconds": seconds, "scipy": scipy.__version__}))


# ---------------------------------------------------------------- parent


def ensure_venv() -> Path:
    """Create bench/.venv-bsrgan with the project's interpreter and install bsrgan, if missing."""
    python = VENV / "bin" / "python"
    probe = [str(python), "-c", "import scipy, numpy; scipy.finfo = numpy.finfo; import bsrgan.utils.utils_blindsr"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"creating {VENV} (a few minutes: torch is large)", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *VENV_REQUIREMENTS], check=True)
    subprocess.run(probe, check=True)
    return python


def load_photos() -> list[np.ndarray]:
    """The colour photographs that ship inside scikit-image and scikit-learn (no download)."""
    from skimage import data
    from sklearn.datasets import load_sample_images

    names = ["astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina"]
    photos = [np.asarray(getattr(data, n)())[..., :3] for n in names]
    photos += list(data.stereo_motorcycle()[:2])  # motorcycle left and right
    photos += [np.asarray(im)[..., :3] for im in load_sample_images().images]
    return photos


def make_crops(n: int, size: int, seed: int = 0) -> np.ndarray:
    """N random size x size crops, cycling over the photographs; [N x size x size x 3] uint8."""
    rng = np.random.default_rng(seed)
    photos = load_photos()
    crops = []
    for i in range(n):
        p = photos[i % len(photos)]
        top = int(rng.integers(p.shape[0] - size + 1))
        left = int(rng.integers(p.shape[1] - size + 1))
        crops.append(p[top : top + size, left : left + size])
    return np.ascontiguousarray(np.stack(crops), dtype=np.uint8)


def psnr_upsampled(lr: np.ndarray, hr: np.ndarray) -> float:
    """PSNR in dB of the bicubic (cv2) upsampled LR against the HR, both uint8."""
    import cv2

    up = cv2.resize(lr, (hr.shape[1], hr.shape[0]), interpolation=cv2.INTER_CUBIC)
    mse = np.mean((up.astype(np.float64) - hr.astype(np.float64)) ** 2)
    return float(10.0 * np.log10(255.0**2 / max(mse, 1e-10)))


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
    """Time ours in-process and the original in its venv on the same crops; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="number of crops (default 200)")
    parser.add_argument("--size", type=int, default=256, help="crop side in px (default 256)")
    parser.add_argument("--no-original", action="store_true", help="skip the bsrgan comparison")
    parser.add_argument("--cv2-threads", type=int, default=None, help="cv2.setNumThreads for ours (default: cv2's)")
    parser.add_argument("--child", nargs=2, metavar=("SRC", "DST"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_original(*args.child)
        return

    sys.path.insert(0, str(BENCH_DIR.parent))
    import cv2

    if args.cv2_threads is not None:
        cv2.setNumThreads(args.cv2_threads)
    crops = make_crops(args.n, args.size)
    rows: dict[str, tuple[list[float], np.ndarray]] = {}
    for variant in ("bsr", "bsr_light", "bicubic"):
        rows[variant] = run_ours(crops, variant)
    if not args.no_original:
        python = ensure_venv()
        with tempfile.TemporaryDirectory() as tmp:
            src, dst = os.path.join(tmp, "crops.npy"), os.path.join(tmp, "lq.npy")
            np.save(src, crops)
            child = subprocess.run(
                [str(python), str(Path(__file__).resolve()), "--child", src, dst],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            report = json.loads(child.stdout.strip().splitlines()[-1])
            rows["original bsrgan"] = (report["seconds"], np.load(dst))

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
