"""Stage `evaluate_inpaint`: the inpainting model's fills beside a blurred-fill baseline, scored as Tab. 7 (Sec. 4.5).

The first `samples` val images and their masks (stage masks, zipped by key) are
inpainted by `--models`/ldm_inpaint (sample i from seed + i; known pixels kept)
and by the baseline, normalized convolution of the surroundings
(`ldm.metrics.inpainting.blur_fill`). Each fill is scored by FID against the val
originals (torch-fidelity; the reference statistics cached under the shards'
content hash), LPIPS against its original (`lpips`, VGG16 from disk), and PSNR
and SSIM over the image and inside the hole. Without the Inception or VGG16
weights FID or LPIPS is reported as skipped, with the reason, and everything
else is still computed; stand-ins (random-conv, random-vgg16) are named as such.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from dataclasses import dataclass
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from einops import rearrange

from ldm.autoencoder.checkpoint import load_autoencoder
from ldm.autoencoder.losses import MissingWeightsError
from ldm.data.grids import save_titled_columns
from ldm.data.loader import image_loader, shard_urls, to_uint8
from ldm.data.shards import sha256_file, shards_sha256
from ldm.diffusion.config import SamplerSettings
from ldm.errors import InvalidInput
from ldm.latent_diffusion.checkpoint import load_ldm
from ldm.latent_diffusion.inpaint import check_inpaint_model, inpaint_images
from ldm.masks.shards import zip_masks
from ldm.metrics.fidelity import MIN_FIDELITY_IMAGES, ReferenceCache, features_fingerprint, fidelity_metrics
from ldm.metrics.inpainting import BASELINE, BLUR_FILL, MODEL, blur_fill, coverage_stats, grid_columns, row_labels, score_fill
from ldm.metrics.names import STAND_INS
from ldm.metrics.perceptual import lpips_model
from ldm.model_dir import AUTOENCODER, LDM_INPAINT, WEIGHTS
from ldm.reports import write_json
from stages.cli import arg, stage_main
from stages.params import EvaluateInpaintParams, Params, lineage, to_config

log = logging.getLogger("stages.evaluate_inpaint")

GRID = "inpaint.png"


@dataclass(frozen=True)
class Paths:
    """The stage's inputs and outputs, as dvc.yaml names them."""

    models: Path = arg("folder with autoencoder/ and ldm_inpaint/")
    images: Path = arg("folder of {train,val}-NNNNNN.tar image shards")
    masks: Path = arg("folder of mask shards beside the image shards (stage masks)")
    metrics: Path = arg("output JSON: every score of the model and the baseline, settings, seeds, lineage")
    grids: Path = arg(f"output folder of {GRID}: original | mask | masked | baseline | LDM fill")
    cache: Path = arg("torch-fidelity's reference statistics (kept across runs)")


def _val_masked(image_urls: list[str], mask_urls: list[str], count: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The first `count` val images uint8 [N x 3 x H x W], their masks uint8 [N x 1 x H x W] (1 = hole), mask kinds."""
    pairs = list(islice(zip_masks(image_urls, mask_urls), count))
    if len(pairs) < MIN_FIDELITY_IMAGES:
        raise InvalidInput(f"{mask_urls[0]}: {len(pairs)} val images with masks, and FID needs at least "
                           f"{MIN_FIDELITY_IMAGES}; give the download stage more val images")
    images = torch.stack([torch.from_numpy(image.image) for image, _ in pairs])  # (N, H, W, 3)
    masks = torch.stack([torch.from_numpy(mask.mask) for _, mask in pairs])  # (N, H, W)
    return rearrange(images, "n h w c -> n c h w"), rearrange(masks, "n h w -> n 1 h w"), [m.kind for _, m in pairs]


def _val_images(urls: list[str], p: EvaluateInpaintParams) -> torch.Tensor:
    """uint8 [N x 3 x H x W] of every val image: the FID reference."""
    loader = image_loader(urls, batch_size=p.batch_size, settings=p.loader_settings())
    return torch.cat([rearrange(torch.from_numpy(to_uint8(x)), "n h w c -> n c h w") for x, _ in loader])


def _scorers(p: EvaluateInpaintParams, urls: list[str], cache: Path, report: dict[str, Any]) -> tuple[Any, Any]:
    """(LPIPS module or None, FID scorer or None); what is skipped goes into report["skipped"] with the reason."""
    try:
        perceptual, report["lpips"] = lpips_model(p.lpips_net, p.vgg_weights or None)
    except MissingWeightsError as exc:
        perceptual, report["lpips"] = None, {"net": p.lpips_net, "weights_sha256": None}
        report["skipped"]["lpips"] = f"{exc} (evaluate_inpaint.vgg_weights)"
    try:
        report["feature_extractor"] = features_fingerprint(p.feature_extractor, p.inception_weights or None)
    except MissingWeightsError as exc:
        report["feature_extractor"] = {"feature_extractor": p.feature_extractor, "weights_sha256": None}
        report["skipped"]["fid"] = f"{exc} (evaluate_inpaint.inception_weights)"
        return perceptual, None
    reference = _val_images(urls, p)
    report["fid_reference"] = {"split": "val", "images": len(reference), "sha256": shards_sha256(urls)}
    fidelity = partial(fidelity_metrics, reference=reference, feature_extractor=p.feature_extractor, metrics=("fid",),
                       weights_path=p.inception_weights or None, batch_size=p.batch_size,
                       reference_cache=ReferenceCache(cache, report["fid_reference"]["sha256"][:32]))
    return perceptual, fidelity


def run(params: Params, paths: Paths) -> dict[str, Any]:
    """Inpaint val images with the model and the baseline, score both; the report written to `paths.metrics`."""
    p = params.evaluate_inpaint
    torch.set_num_threads(p.threads)
    autoencoder, ae_card = load_autoencoder(paths.models / AUTOENCODER)
    loaded = load_ldm(paths.models / LDM_INPAINT)
    check_inpaint_model(loaded, str(paths.models / LDM_INPAINT))
    image_urls, mask_urls = shard_urls(paths.images, "val"), shard_urls(paths.masks, "val")
    images, masks, kinds = _val_masked(image_urls, mask_urls, p.samples)
    report: dict[str, Any] = {"stage": "evaluate_inpaint", "samples": len(images), "skipped": {}, "masks": {
        "coverage": coverage_stats(masks), "kinds": dict(sorted(Counter(kinds).items()))}}
    perceptual, fidelity = _scorers(p, image_urls, paths.cache, report)

    settings, seeds = to_config(p.sampling, SamplerSettings), [p.seed + i for i in range(len(images))]
    start = time.perf_counter()
    filled = inpaint_images(loaded, autoencoder, images, masks, seeds, settings, batch_size=p.batch_size)
    seconds = time.perf_counter() - start
    baseline = blur_fill(images, masks)
    score = partial(score_fill, original=images, masks=masks, perceptual=perceptual, fidelity=fidelity,
                    batch_size=p.batch_size)
    report[MODEL] = {**score(filled), "preset": loaded.card.preset, "autoencoder_preset": ae_card.preset,
                     "sampling": settings.to_dict(), "seeds": [seeds[0], seeds[-1]]}
    report[BASELINE] = {**score(baseline), **BLUR_FILL}
    report["stand_ins"] = {name: STAND_INS[name] for name in (p.feature_extractor, p.lpips_net) if name in STAND_INS}
    columns = grid_columns(images, masks, {BASELINE: baseline, MODEL: filled}, p.grid_images)
    save_titled_columns(columns, paths.grids / GRID, row_labels(kinds[: p.grid_images], masks[: p.grid_images]))
    report["grid"] = {"file": GRID, "columns": list(columns)}
    report["lineage"] = lineage({"evaluate_inpaint": p}, {
        "images_val": shards_sha256(image_urls), "masks_val": shards_sha256(mask_urls),
        "ldm_inpaint": sha256_file(paths.models / LDM_INPAINT / WEIGHTS),
        "autoencoder": sha256_file(paths.models / AUTOENCODER / WEIGHTS)})
    write_json(paths.metrics, report)
    for name, why in report["skipped"].items():
        log.warning("skipped %s: %s", name, why)
    log.info("inpainted %d val images in %.1f s (%s, %d steps): LPIPS %s / %s, FID %s / %s (model / blurred fill)",
             len(images), seconds, settings.sampler, settings.steps,
             *(report[row].get(key, "skipped") for key in ("lpips", "fid") for row in (MODEL, BASELINE)))
    return report


main = stage_main(run, Paths, __doc__)


if __name__ == "__main__":
    sys.exit(main())
