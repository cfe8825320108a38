"""Data: BSR degradation against the `bsrgan` package, shard loading against a PNG folder, the latent cache
against encoding on the fly.

`bsrgan` 0.1.5 (Zhang et al.'s utils_blindsr.py on PyPI) predates SciPy 1.14 and lives outside the project's
environment (`make bench` installs it with --no-deps under bench/.peers, so `pip check` of .venv stays clean);
`import_bsrgan` gives it the two names modern SciPy dropped: `scipy.finfo` (its fspecial) and a linear
`interp2d` (its shift_pixel), the latter on RectBivariateSpline of degree 1, which interp2d's `linear` is on a
regular grid.
"""

from __future__ import annotations

import itertools
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, RandomSampler

from bench.common import ROOT, NotReady, Row, interleaved, rate_row
from bench.models import ldm_config
from ldm.data.loader import image_loader, shard_urls, to_tensor
from ldm.data.loader_config import LoaderSettings
from ldm.data.schema import ImageSample, LatentSample
from ldm.data.shards import write_split

PEERS = ROOT / "bench" / ".peers"  # where `make bench` installs bsrgan (requirements/bench.txt)
SCALE = 4
DEGRADATION_GOAL, CACHE_GOAL = 4.0, 1.5
PREFETCH_PAUSE_S = 2.0  # enough for 2 workers to fill their queues between turns


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


class _Interp2dLinear:
    """scipy.interpolate.interp2d(x, y, z, kind="linear") on a regular grid, as bsrgan calls it."""

    def __init__(self, x: np.ndarray, y: np.ndarray, z: np.ndarray):
        from scipy.interpolate import RectBivariateSpline

        self.spline = RectBivariateSpline(y, x, z, kx=1, ky=1, s=0)

    def __call__(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return self.spline(y, x)


def import_bsrgan() -> ModuleType:
    """bsrgan.utils.utils_blindsr with its shims; NotReady naming the fix when it is not installed."""
    import scipy
    import scipy.interpolate

    os.environ.setdefault("MPLBACKEND", "Agg")  # its utils_image imports pyplot
    if str(PEERS) not in sys.path:
        sys.path.append(str(PEERS))
    scipy.finfo = np.finfo
    scipy.interpolate.interp2d = _Interp2dLinear
    try:
        from bsrgan.utils import utils_blindsr
    except ImportError as exc:
        raise NotReady(f"the bsrgan peer is missing ({exc}); `make bench` installs it under {PEERS}") from exc
    return utils_blindsr


def degradation_rows(n: int, size: int = 256) -> list[Row]:
    """images/s of `bsr` and `bsr_light` against the original degradation_bsrgan on the same crops, in turns."""
    from ldm.degradation import degrade

    blindsr = import_bsrgan()
    crops = make_crops(n, size)

    def original(i: int) -> np.ndarray:
        random.seed(i)  # it draws from the global random and np.random
        np.random.seed(i)
        lq, _ = blindsr.degradation_bsrgan(crops[i].astype(np.float32) / 255.0, sf=SCALE, lq_patchsize=size // SCALE)
        return np.uint8((lq.clip(0, 1) * 255.0).round())

    rows = []
    theirs_psnr: list[float] | None = None
    for variant in ("bsr", "bsr_light"):
        ours_s, theirs_s, ours_psnr, psnr_theirs = [], [], [], []
        degrade(crops[0], scale=SCALE, variant=variant, seed=10_000), original(0)  # warm-up
        for i in range(n):
            start = time.perf_counter()
            lr, _ = degrade(crops[i], scale=SCALE, variant=variant, seed=i)
            ours_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            lq = original(i)
            theirs_s.append(time.perf_counter() - start)
            ours_psnr.append(psnr_upsampled(lr, crops[i]))
            psnr_theirs.append(psnr_upsampled(lq, crops[i]))
        theirs_psnr = theirs_psnr or psnr_theirs
        ours_med, theirs_med = statistics.median(ours_psnr), statistics.median(theirs_psnr)
        note = (f"{n} crops of {size} px, x{SCALE}; PSNR of the bicubic-upsampled LR: ours {ours_med:.2f} dB,"
                f" bsrgan {theirs_med:.2f} dB (medians)")
        rows.append(rate_row("Data", f"BSR degradation, {variant}", "images/s", statistics.median(ours_s),
                             statistics.median(theirs_s), 1, "bsrgan 0.1.5 degradation_bsrgan", DEGRADATION_GOAL, note,
                             psnr_median_ours=ours_med, psnr_median_peer=theirs_med))
    return rows


class PngFolder(Dataset):
    """The peer's layout: one PNG per image, decoded with PIL, as a torchvision-style folder dataset reads it."""

    def __init__(self, paths: list[Path], labels: list[int]):
        self.paths, self.labels = paths, labels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        with Image.open(self.paths[index]) as image:
            return to_tensor(np.asarray(image.convert("RGB"))), self.labels[index]


def _pull(iterator: Any, batches: int) -> Any:
    return lambda: list(itertools.islice(iterator, batches))


def loading_rows(repeats: int, workers: int = 2, n: int = 192, size: int = 256, batch: int = 32) -> list[Row]:
    """samples/s of the training loader over image shards against a DataLoader over the same images as PNG files."""
    from ldm.data.loader import loader_options

    crops = make_crops(n, size, seed=1)
    samples = [ImageSample(f"s{i:05d}", crop, i % 8, "a photo") for i, crop in enumerate(crops)]
    settings = LoaderSettings(num_workers=workers, prefetch_factor=2, pin_memory=False)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_split(samples, folder / "shards", "train", 64)
        paths = []
        for sample in samples:
            paths.append(folder / "folder" / f"{sample.key}.png")
            paths[-1].parent.mkdir(exist_ok=True)
            Image.fromarray(sample.image).save(paths[-1])
        ours = iter(image_loader(shard_urls(folder / "shards", "train"), batch_size=batch, settings=settings,
                                 shuffle=1000, endless=True))
        dataset = PngFolder(paths, [s.label for s in samples])
        sampler = RandomSampler(dataset, replacement=True, num_samples=10**9, generator=torch.Generator().manual_seed(0))
        theirs = iter(DataLoader(dataset, batch_size=batch, sampler=sampler, **loader_options(settings, persistent=True)))
        # Each turn starts with both loaders' prefetch queues full (the pause): the same head start of
        # `workers * prefetch_factor` batches on both sides; the rest of the turn is the steady rate.
        steps = 4 * workers * settings.prefetch_factor
        timing = interleaved(_pull(ours, steps), _pull(theirs, steps), repeats=repeats, warmup=1, pause_s=PREFETCH_PAUSE_S)
    note = (f"{n} images of {size} px, batches of {batch}, {workers} workers each with the same DataLoader options;"
            f" {steps} batches per turn")
    return [rate_row("Data", "loading: webdataset shards vs PNG folder", "images/s", timing.ours_s, timing.peer_s,
                     steps * batch, "DataLoader over a folder of PNGs (PIL)", None, note, workers=workers)]


def latent_cache_rows(repeats: int, n: int = 128, side: int = 64, batch: int = 32) -> list[Row]:
    """LDM training steps/s from the latent cache against encoding each batch on the fly (the reference's way)."""
    import dataclasses

    from ldm.autoencoder import build_autoencoder
    from ldm.autoencoder.presets import preset_config as autoencoder_preset
    from ldm.data.latents import latent_loader
    from ldm.diffusion import diffusion_loss
    from ldm.latent_diffusion import build_ldm

    torch.manual_seed(0)
    autoencoder = build_autoencoder(dataclasses.replace(autoencoder_preset("kl-f4"), ch=32)).eval()
    cfg = ldm_config("tiny-cond", None)
    crops = make_crops(n, side, seed=2)
    samples = [ImageSample(f"s{i:05d}", crop, i % 16, "a photo") for i, crop in enumerate(crops)]
    with torch.inference_mode():
        z = torch.cat([autoencoder.encode_mode(torch.stack([to_tensor(c) for c in crops[i:i + batch]]))
                       for i in range(0, n, batch)])
    latents = [LatentSample(s.key, z[i].numpy().astype(np.float16), s.label, s.caption) for i, s in enumerate(samples)]
    settings = LoaderSettings(num_workers=0, prefetch_factor=2, pin_memory=False)
    with tempfile.TemporaryDirectory() as tmp:
        write_split(samples, Path(tmp) / "images", "train", 64)
        write_split(latents, Path(tmp) / "latents", "train", 64)
        cached = iter(latent_loader(shard_urls(Path(tmp) / "latents", "train"), scale_factor=1.0, batch_size=batch,
                                    settings=settings, endless=True))
        images = iter(image_loader(shard_urls(Path(tmp) / "images", "train"), batch_size=batch, settings=settings,
                                   endless=True))
        steppers = []
        for source in ("cache", "fly"):
            torch.manual_seed(0)
            model = build_ldm(cfg).train()
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

            def step(model: Any = model, optimizer: Any = optimizer, source: str = source) -> None:
                if source == "cache":
                    item = next(cached)
                    z0, labels = item["z"].float(), item["label"]
                else:
                    x, labels = next(images)
                    with torch.no_grad():
                        z0 = autoencoder.encode_mode(x)
                t = torch.randint(0, model.schedule.num_steps, (len(z0),))
                loss = diffusion_loss(lambda xt, tt: model(xt, tt, labels), z0, t, torch.randn_like(z0), model.schedule,
                                      model.diffusion)  # L_LDM, Eq. 2
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            steppers.append(step)
        timing = interleaved(*steppers, repeats=repeats)
    note = (f"tiny-cond LDM, batch {batch} of {side} px; encoder kl-f4 at width 32"
            f" ({sum(p.numel() for p in autoencoder.parameters()) / 1e6:.1f}M parameters)")
    return [rate_row("Data", "LDM training from the latent cache vs encoding on the fly", "steps/s", timing.ours_s,
                     timing.peer_s, 1, "on-the-fly encoding (the reference)", CACHE_GOAL, note)]
