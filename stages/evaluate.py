"""Stage `evaluate`: samples scored with torch-fidelity, super-resolution against bicubic, the autoencoder's rFID (D.3).

    python -m stages.evaluate --params params.yaml --models models --images data/images \
        --pairs data/pairs --metrics metrics/evaluate.json --grids reports/evaluate

`--models` holds `autoencoder/`, `ldm/` and (optionally) `ldm_sr/`, as the
training stages write them or `ldm pull` brings them back. Generated samples are
scored against the `reference_split` of the image shards; the reference's
features are cached under a name that carries the shards' content hash and the
extractor's weights hash. Without Inception weights FID/KID/IS/PR are reported
as skipped, with the reason, and everything else is still computed. Every
setting that changes a number is written beside it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torchvision.utils import make_grid, save_image
from tqdm import tqdm

from ldm.autoencoder import MissingWeightsError, load_autoencoder
from ldm.data.loader import image_dataset, shard_urls, to_uint8
from ldm.metrics import ReferenceCache, features_fingerprint, fidelity_metrics
from ldm.unet.checkpoint import LoadedLDM, load_ldm
from ldm.unet.generate import SamplerSettings, conditions, decode_latents, generate_latents
from stages.eval_sr import evaluate_sr
from stages.lineage import lineage, run_cli, write_json
from stages.params import Params, ParamsError, load_params
from stages.training import shards_sha256
from stages.training_params import EvaluateParams, SamplingParams

log = logging.getLogger("stages.evaluate")


@dataclass(frozen=True)
class Paths:
    """The stage's inputs and outputs, as dvc.yaml names them."""

    models: Path
    images: Path
    pairs: Path | None
    metrics: Path
    grids: Path
    cache: Path  # torch-fidelity's reference statistics


def settings_of(p: SamplingParams) -> SamplerSettings:
    """The library's sampler settings from a params section."""
    return SamplerSettings(**p.model_dump())


def _images(urls: list[str], limit: int | None = None) -> torch.Tensor:
    """uint8 [N x 3 x H x W] of the shards, in order."""
    out = []
    for x, _ in image_dataset(urls, split_by_node=False):
        out.append(torch.from_numpy(to_uint8(x[None])[0]).permute(2, 0, 1))
        if limit and len(out) >= limit:
            break
    return torch.stack(out)


def _fidelity(p: EvaluateParams, generated: torch.Tensor, reference: torch.Tensor, ref_hash: str, cache: Path,
              metrics: tuple[str, ...]) -> tuple[dict[str, float], str | None]:
    """torch-fidelity's numbers, or ({}, the reason they were skipped)."""
    try:
        return fidelity_metrics(generated, reference, feature_extractor=p.feature_extractor,
                                weights_path=p.inception_weights or None, metrics=metrics,  # type: ignore[arg-type]
                                reference_cache=ReferenceCache(cache, ref_hash[:32]), batch_size=p.batch_size), None
    except MissingWeightsError as exc:
        return {}, str(exc)


def generate(loaded: LoadedLDM, decode, p: EvaluateParams) -> tuple[torch.Tensor, list[int] | None]:
    """`p.samples` decoded samples uint8 [N x 3 x H x W]; class models cycle through their classes."""
    model, cfg = loaded.model, loaded.model.config.conditioning
    settings = settings_of(p.sampling)
    if cfg.kind == "concat":
        raise ValueError("models/ldm is a concat (super-resolution) model; evaluate samples an unconditional, "
                         "class or text model there and the SR model in models/ldm_sr")
    labels = [i % cfg.n_classes for i in range(p.samples)] if cfg.kind == "class" else None
    prompts = None
    if cfg.kind == "text":
        captions = loaded.config.get("captions") or ["a photograph"]
        prompts = [captions[i % len(captions)] for i in range(p.samples)]
    images = []
    for start in tqdm(range(0, p.samples, p.batch_size), desc="sampling", unit="batch"):
        end = min(start + p.batch_size, p.samples)
        cond, null = conditions(model, labels=labels[start:end] if labels else None,
                                prompts=prompts[start:end] if prompts else None, tokenizer=loaded.tokenizer)
        z = generate_latents(model, cond, null, [p.seed + i for i in range(start, end)], settings)
        images.append(decode_latents(decode, z, loaded.scale_factor))
    return torch.cat(images), labels


def save_png_grid(images: torch.Tensor, path: Path, nrow: int) -> None:
    """uint8 [N x 3 x H x W] as one PNG, written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.partial.png")
    save_image(make_grid(images.float() / 255.0, nrow=nrow, padding=2, pad_value=1.0), temp)
    temp.replace(path)


def run(params: Params, paths: Paths) -> dict[str, Any]:
    """Sample, score, super-resolve; the report written to `paths.metrics` comes back."""
    p = params.evaluate
    torch.set_num_threads(p.threads)
    autoencoder, ae_config = load_autoencoder(paths.models / "autoencoder")
    loaded = load_ldm(paths.models / "ldm")
    ref_urls = shard_urls(paths.images, p.reference_split)
    val_urls = shard_urls(paths.images, "val")
    ref_hash = shards_sha256(ref_urls)
    wanted = tuple(p.metrics)
    try:
        fingerprint: dict[str, Any] = features_fingerprint(p.feature_extractor, p.inception_weights or None)  # type: ignore[arg-type]
    except MissingWeightsError as exc:
        fingerprint = {"feature_extractor": p.feature_extractor, "weights_sha256": None, "missing": str(exc)}
    report: dict[str, Any] = {"skipped": {}, "feature_extractor": fingerprint}

    generated, labels = generate(loaded, autoencoder.decode, p)
    save_png_grid(generated[: p.grid_images], paths.grids / "samples.png", nrow=8)
    reference = _images(ref_urls)
    scores, reason = _fidelity(p, generated, reference, ref_hash, paths.cache, wanted)
    report["ldm"] = {"samples": len(generated), "reference": {"split": p.reference_split, "images": len(reference),
                                                              "sha256": ref_hash},
                     "sampling": p.sampling.model_dump(), "seeds": [p.seed, p.seed + len(generated) - 1],
                     "labels": "i % n_classes" if labels else None, "preset": loaded.config.get("preset"),
                     "scale_factor": loaded.scale_factor, **scores}
    if reason:
        report["skipped"]["ldm_fidelity"] = reason

    val = _images(val_urls)
    with torch.no_grad():
        encoded = autoencoder.encode(val.float() / 127.5 - 1.0)
        z = encoded.mode() if hasattr(encoded, "mode") else encoded
        recon = decode_latents(autoencoder.decode, z, 1.0)
    rfid, reason = _fidelity(p, recon, val, shards_sha256(val_urls), paths.cache, ("fid",))
    report["autoencoder"] = {"preset": ae_config.get("preset"), "val_images": len(val), **{f"r{k}": v for k, v in rfid.items()}}
    if reason:
        report["skipped"]["rfid"] = reason

    if (paths.models / "ldm_sr").is_dir() and paths.pairs is not None:
        report["sr"] = evaluate_sr(load_ldm(paths.models / "ldm_sr"), autoencoder.decode, shard_urls(paths.pairs, "val"),
                                   samples=p.sr_samples, settings=settings_of(p.sr_sampling), seed=p.seed,
                                   batch_size=p.batch_size, downsample=autoencoder.downsample_factor,
                                   grid=paths.grids / "sr.png")
    else:
        report["skipped"]["sr"] = f"no {paths.models / 'ldm_sr'}: train it with `dvc repro train_sr`"
    report["lineage"] = lineage({"evaluate": p}, {"reference": ref_hash, "val": shards_sha256(val_urls)})
    write_json(paths.metrics, report)
    for name, why in report["skipped"].items():
        log.warning("skipped %s: %s", name, why)
    log.info("evaluated %d samples (%s, %d steps, guidance %.2f)", len(generated), p.sampling.sampler,
             p.sampling.steps, p.sampling.guidance_scale)
    return report


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: one-line errors for bad params or inputs, no traceback."""
    parser = argparse.ArgumentParser(prog="python -m stages.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    parser.add_argument("--models", default="models", type=Path, help="folder with autoencoder/, ldm/, ldm_sr/")
    parser.add_argument("--images", default="data/images", type=Path, help="image shards (default: %(default)s)")
    parser.add_argument("--pairs", default="data/pairs", type=Path, help="pair shards for SR (default: %(default)s)")
    parser.add_argument("--metrics", default="metrics/evaluate.json", type=Path, help="report (default: %(default)s)")
    parser.add_argument("--grids", default="reports/evaluate", type=Path, help="sample grid PNGs (default: %(default)s)")
    parser.add_argument("--cache", default="data/cache/fidelity", type=Path, help="reference statistics cache")
    args = parser.parse_args(argv)
    paths = Paths(args.models, args.images, args.pairs, args.metrics, args.grids, args.cache)
    return run_cli(lambda: run(load_params(args.params), paths), (ParamsError, FileNotFoundError, ValueError), log)


if __name__ == "__main__":
    sys.exit(main())
