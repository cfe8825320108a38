"""Stage `evaluate`: samples scored with torch-fidelity, super-resolution against bicubic, the autoencoder's rFID (D.3).

`--models` holds `autoencoder/`, `ldm/` and (optionally) `ldm_sr/`, as the
training stages write them or `ldm pull` brings them back. Generated samples are
scored against the `reference_split` of the image shards; the reference's
features are cached under a name that carries the shards' content hash and the
extractor's weights hash. Super-resolved images and their bicubic baseline
get PSNR/SSIM against HR and FID (against `sr_reference_split`: the val pairs'
HR images or the train shards, Tab. 11) and IS. Without Inception weights
FID/KID/IS/PR are reported as skipped, with the reason, and everything else is
still computed. Every setting that changes a number is written beside it.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from einops import rearrange

from ldm.autoencoder.checkpoint import load_autoencoder
from ldm.autoencoder.losses import MissingWeightsError
from ldm.autoencoder.model import Autoencoder
from ldm.data.grids import save_grid
from ldm.data.loader import image_loader, shard_urls, to_tensor, to_uint8
from ldm.data.schema import PairSample
from ldm.data.shards import read_shards, shards_sha256
from ldm.diffusion.config import SamplerSettings
from ldm.errors import InvalidInput
from ldm.latent_diffusion.checkpoint import LoadedLDM, load_ldm
from ldm.latent_diffusion.generate import decode_latents, sample_images
from ldm.latent_diffusion.upscale import check_sr_model, evaluate_sr
from ldm.metrics.fidelity import (MIN_FIDELITY_IMAGES, ReferenceCache, features_fingerprint, fidelity_metrics,
                                  fidelity_or_skip)
from ldm.metrics.names import STAND_INS
from ldm.reports import write_json
from stages.cli import arg, stage_main
from stages.params import EvaluateParams, Params, lineage, to_config

log = logging.getLogger("stages.evaluate")


@dataclass(frozen=True)
class Paths:
    """The stage's inputs and outputs, as dvc.yaml names them."""

    models: Path = arg("folder with autoencoder/, ldm/ and optionally ldm_sr/")
    images: Path = arg("folder of {train,val}-NNNNNN.tar image shards")
    pairs: Path = arg("folder of val pair shards for super-resolution")
    metrics: Path = arg("output JSON: every score, its settings and seeds")
    grids: Path = arg("output folder of sample grid PNGs")
    cache: Path = arg("torch-fidelity's reference statistics (kept across runs)")


def _images(urls: list[str], p: EvaluateParams) -> torch.Tensor:
    """uint8 [N x 3 x H x W] of the shards, in order (decoded by the stage's loader workers)."""
    loader = image_loader(urls, batch_size=p.batch_size, settings=p.loader_settings())
    return torch.cat([rearrange(torch.from_numpy(to_uint8(x)), "n h w c -> n c h w") for x, _ in loader])


def _pairs(urls: list[str], limit: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(HR [N x 3 x H x W], LR [N x 3 x h x w]) in [-1, 1], the first `limit` pairs (None: all) in order."""
    pairs = [PairSample.decode(raw) for raw in islice(read_shards(urls), limit)]
    if not pairs:
        raise InvalidInput(f"{urls[0] if urls else 'the pair shards'}: no val pairs to super-resolve")
    return torch.stack([to_tensor(p.hr) for p in pairs]), torch.stack([to_tensor(p.lr) for p in pairs])


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[N x 3 x H x W] in [-1, 1] -> uint8 [N x 3 x H x W]."""
    return rearrange(torch.from_numpy(to_uint8(x)), "n h w c -> n c h w")


def _fidelity(p: EvaluateParams, generated: torch.Tensor, reference: torch.Tensor, ref_hash: str, cache: Path,
              metrics: tuple[str, ...]) -> tuple[dict[str, float], str | None]:
    """torch-fidelity's numbers, or ({}, the reason they were skipped)."""
    return fidelity_or_skip(generated, reference, feature_extractor=p.feature_extractor,
                            weights_path=p.inception_weights or None, metrics=metrics,
                            reference_cache=ReferenceCache(cache, ref_hash[:32]), batch_size=p.batch_size)


def _sr_reference(p: EvaluateParams, paths: Paths) -> tuple[torch.Tensor, dict[str, Any]]:
    """The SR FID reference (Tab. 11): the HR images of every val pair, or the train image shards; its record."""
    if p.sr_reference_split == "val":
        urls = shard_urls(paths.pairs, "val")
        images = _to_uint8(_pairs(urls, None)[0])
        what = "HR images of the val pairs"
    else:
        urls = shard_urls(paths.images, "train")
        images, what = _images(urls, p), "train image shards"
    return images, {"split": p.sr_reference_split, "set": what, "images": len(images), "sha256": shards_sha256(urls)}


def _sr(p: EvaluateParams, paths: Paths, autoencoder: Autoencoder, report: dict[str, Any]) -> None:
    """Super-resolve val pairs; PSNR/SSIM and FID/IS (Tab. 11) of SR and of bicubic, the grid sr.png."""
    sr_model = load_ldm(paths.models / "ldm_sr")
    check_sr_model(sr_model, str(paths.models / "ldm_sr"))
    hr, lr = _pairs(shard_urls(paths.pairs, "val"), p.sr_samples)
    fidelity, reference = None, {"split": p.sr_reference_split}
    if "missing" in report["feature_extractor"]:  # the extractor's weights are absent: FID/IS skipped, the rest runs
        report["skipped"]["sr_fidelity"] = report["feature_extractor"]["missing"]
    elif len(hr) < MIN_FIDELITY_IMAGES:
        report["skipped"]["sr_fidelity"] = (f"FID and IS need at least {MIN_FIDELITY_IMAGES} images; "
                                            f"evaluate.sr_samples gave {len(hr)} val pairs")
    else:
        images, reference = _sr_reference(p, paths)
        fidelity = partial(fidelity_metrics, reference=images, feature_extractor=p.feature_extractor,
                           metrics=("fid", "isc"), weights_path=p.inception_weights or None, batch_size=p.batch_size,
                           reference_cache=ReferenceCache(paths.cache, reference["sha256"][:32]))
    report["sr"], grid = evaluate_sr(sr_model, autoencoder.decode, hr, lr, settings=to_config(p.sr_sampling, SamplerSettings),
                                     seed=p.seed, batch_size=p.batch_size, downsample=autoencoder.downsample_factor,
                                     fidelity=fidelity)
    report["sr"]["fid_reference"] = reference
    save_grid(grid, paths.grids / "sr.png", nrow=3)


def _conditions(loaded: LoadedLDM, n: int) -> dict[str, Any]:
    """Labels (class models cycle through their classes) or prompts (the training captions) for n samples."""
    cfg = loaded.model.config.conditioning
    if cfg.kind == "concat":
        raise InvalidInput("models/ldm is a concat (super-resolution) model; evaluate samples an unconditional, "
                           "class or text model there and the SR model in models/ldm_sr")
    if cfg.kind == "class":
        return {"labels": [i % cfg.n_classes for i in range(n)]}
    if cfg.kind == "text":
        captions = loaded.card.captions or ("a photograph",)
        return {"prompts": [captions[i % len(captions)] for i in range(n)]}
    return {}


def run(params: Params, paths: Paths) -> dict[str, Any]:
    """Sample, score, super-resolve; the report written to `paths.metrics` comes back."""
    p = params.evaluate
    torch.set_num_threads(p.threads)
    autoencoder, ae_card = load_autoencoder(paths.models / "autoencoder")
    loaded = load_ldm(paths.models / "ldm")
    ref_urls, val_urls = shard_urls(paths.images, p.reference_split), shard_urls(paths.images, "val")
    ref_hash = shards_sha256(ref_urls)
    try:
        fingerprint: dict[str, Any] = features_fingerprint(p.feature_extractor, p.inception_weights or None)
    except MissingWeightsError as exc:
        fingerprint = {"feature_extractor": p.feature_extractor, "weights_sha256": None, "missing": str(exc)}
    report: dict[str, Any] = {"skipped": {}, "feature_extractor": fingerprint,
                              "stand_ins": {name: STAND_INS[name] for name in (p.feature_extractor,) if name in STAND_INS}}

    cond = _conditions(loaded, p.samples)
    settings = to_config(p.sampling, SamplerSettings)
    start = time.perf_counter()
    generated = sample_images(loaded, autoencoder.decode, [p.seed + i for i in range(p.samples)], settings,
                              batch_size=p.batch_size, **cond)
    seconds = time.perf_counter() - start
    save_grid(generated[: p.grid_images], paths.grids / "samples.png", nrow=8)
    reference = _images(ref_urls, p)
    scores, reason = _fidelity(p, generated, reference, ref_hash, paths.cache, tuple(p.metrics))
    report["ldm"] = {"samples": len(generated), "reference": {"split": p.reference_split, "images": len(reference),
                                                              "sha256": ref_hash},
                     "sampling": settings.to_dict(), "seeds": [p.seed, p.seed + len(generated) - 1],
                     "labels": "i % n_classes" if "labels" in cond else None, "preset": loaded.card.preset,
                     "sampling_samples_per_s": round(len(generated) / seconds, 3), **scores}
    if reason:
        report["skipped"]["ldm_fidelity"] = reason

    val = _images(val_urls, p)
    with torch.no_grad():
        recon = decode_latents(autoencoder.decode, autoencoder.encode_mode(val.float() / 127.5 - 1.0), 1.0)
    rfid, reason = _fidelity(p, recon, val, shards_sha256(val_urls), paths.cache, ("fid",))
    report["autoencoder"] = {"preset": ae_card.preset, "val_images": len(val), **{f"r{k}": v for k, v in rfid.items()}}
    if reason:
        report["skipped"]["rfid"] = reason

    if (paths.models / "ldm_sr").is_dir():
        _sr(p, paths, autoencoder, report)
    else:
        report["skipped"]["sr"] = f"no {paths.models / 'ldm_sr'}: train it with `dvc repro train_sr`"
    report["lineage"] = lineage({"evaluate": p}, {"reference": ref_hash, "val": shards_sha256(val_urls)})
    write_json(paths.metrics, report)
    for name, why in report["skipped"].items():
        log.warning("skipped %s: %s", name, why)
    log.info("evaluated %d samples (%s, %d steps, guidance %.2f)", len(generated), settings.sampler, settings.steps,
             settings.guidance_scale)
    return report


main = stage_main(run, Paths, __doc__)


if __name__ == "__main__":
    sys.exit(main())
