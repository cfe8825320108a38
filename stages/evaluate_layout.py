"""Stage `evaluate_layout`: the layout-to-image model drawn from val layouts (Sec. 4.3.1, Fig. 15).

For the first `evaluate_layout.layouts` val latents with a layout (the boxes the
model trains on, from the latent cache) it writes one picture of titled columns:
the boxes drawn on a blank canvas | the real image | samples of several seeds,
and a JSON of the settings, seeds, keys and lineage, with the FID of every
sample against the val images (Tab. 9; skipped with the reason without the
Inception weights). On the embedded default the boxes are the stand-in label
maps' regions, and the picture says so.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from einops import rearrange

from ldm.autoencoder.checkpoint import autoencoder_sha256, load_autoencoder
from ldm.data.grids import save_titled_columns
from ldm.data.schema import ImageSample
from ldm.data.loader import shard_urls
from ldm.data.shards import AtomicFolder, read_shards, sha256_file, shards_sha256
from ldm.diffusion.config import SamplerSettings
from ldm.errors import InvalidInput
from ldm.latent_diffusion.checkpoint import load_ldm
from ldm.latent_diffusion.layout_eval import layout_columns, read_val_layouts, sample_layouts
from ldm.metrics.fidelity import MIN_FIDELITY_IMAGES, fidelity_or_skip
from ldm.metrics.names import STAND_INS
from ldm.model_dir import AUTOENCODER, LDM_LAYOUT, WEIGHTS, model_folder
from ldm.reports import write_json
from stages.cli import arg, stage_main
from stages.params import Params, lineage, to_config

log = logging.getLogger("stages.evaluate_layout")
PICTURE = "layout.png"


@dataclass(frozen=True)
class Paths:
    """The stage's inputs and outputs, as dvc.yaml names them."""

    models: Path = arg("MODEL_DIR with autoencoder/ and ldm_layout/")
    latents: Path = arg("the latent cache: its val shards give the layouts")
    images: Path = arg("folder of {train,val}-NNNNNN.tar image shards: the real images")
    metrics: Path = arg("output JSON: settings, seeds, keys and lineage")
    grids: Path = arg(f"output folder of the picture {PICTURE}")


def _boxes_title(params: Params) -> str:
    """The boxes column's title: where the boxes came from, a stand-in named as one."""
    boxes = params.label_maps.config().boxes  # a box per label-map region stands in for annotated boxes
    return "boxes (stand-in)" if boxes == "label_map" else f"boxes ({boxes})"


def _fid(params: Params, samples: torch.Tensor, image_urls: list[str]) -> dict:
    """FID of the samples [L x S x 3 x H x W] uint8 against every val image, or the reason it was skipped."""
    p = params.evaluate_layout
    generated = rearrange(samples, "l s c h w -> (l s) c h w")
    if len(generated) < MIN_FIDELITY_IMAGES:
        return {"skipped": f"{len(generated)} samples; FID needs at least {MIN_FIDELITY_IMAGES} (evaluate_layout.layouts x seeds)"}
    reference = torch.stack([torch.from_numpy(ImageSample.decode(raw).image) for raw in read_shards(image_urls)])
    scores, reason = fidelity_or_skip(generated, rearrange(reference, "n h w c -> n c h w"), metrics=("fid",),
                                      feature_extractor=p.feature_extractor, weights_path=p.inception_weights or None,
                                      batch_size=p.batch_size)
    found = {"samples": len(generated), "reference": {"split": "val", "images": len(reference)},
             "feature_extractor": p.feature_extractor, **scores}
    if p.feature_extractor in STAND_INS:
        found["stand_in"] = STAND_INS[p.feature_extractor]
    return {**found, "skipped": f"{reason} (evaluate_layout.inception_weights)"} if reason else found


def run(params: Params, paths: Paths) -> dict:
    """Sample every chosen val layout under every seed; write the picture and the metrics, which come back."""
    p = params.evaluate_layout
    torch.set_num_threads(p.threads)
    settings = to_config(p.sampling, SamplerSettings)
    autoencoder, _ = load_autoencoder(paths.models / AUTOENCODER)
    folder = model_folder(paths.models, LDM_LAYOUT, "--models")
    loaded = load_ldm(folder)
    if loaded.model.config.conditioning.kind != "layout":
        raise InvalidInput(f"{folder} is a {loaded.model.config.conditioning.kind}-conditioned model, not a layout "
                           "model; train one with `dvc repro train_layout`")
    latent_urls, image_urls = shard_urls(paths.latents, "val"), shard_urls(paths.images, "val")
    vals = read_val_layouts(latent_urls, image_urls, p.layouts)
    seeds = [p.seed + i for i in range(p.seeds)]
    start = time.perf_counter()
    samples = sample_layouts(loaded, autoencoder.decode, [v.layout for v in vals], seeds, settings,
                             batch_size=p.batch_size)  # (L, S, 3, H, W)
    seconds = time.perf_counter() - start
    with AtomicFolder(paths.grids) as staging:
        save_titled_columns(layout_columns(vals, samples, seeds, _boxes_title(params)), staging / PICTURE,
                            [v.key for v in vals])
    inputs = {"model": sha256_file(folder / WEIGHTS), "autoencoder": autoencoder_sha256(paths.models / AUTOENCODER),
              "latents_val": shards_sha256(latent_urls), "images_val": shards_sha256(image_urls)}
    metrics = {"stage": "evaluate_layout", "preset": loaded.card.preset, "picture": PICTURE,
               "layouts": [{"key": v.key, "boxes": len(v.layout.boxes)} for v in vals], "seeds": seeds,
               "size": list(samples.shape[-2:]), "sampling": settings.to_dict(),
               "boxes": params.label_maps.config().describe(), "fid": _fid(params, samples, image_urls),
               "lineage": lineage({"evaluate_layout": p, "label_maps": params.label_maps}, inputs)}
    write_json(paths.metrics, metrics)
    log.info("%d layouts x %d seeds in %.0f s -> %s", len(vals), len(seeds), seconds, paths.grids / PICTURE)
    return metrics


main = stage_main(run, Paths, __doc__)


if __name__ == "__main__":
    sys.exit(main())
