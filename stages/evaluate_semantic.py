"""Stage `evaluate_semantic`: the semantic synthesis model on val label maps, at the training size and larger.

For `evaluate_semantic.maps` val images spread over the split, samples the
model from their label maps at the training size and convolutionally at
`evaluate_semantic.scale` x that size (the map repeated nearest; the latent is
simply larger: Sec. 4.3.2, Fig. 13, 23, 24), with the training scale_factor
(Sec. C.1). Writes the picture label map | real image | sample | sample at Nx
(maps named as stand-ins where they are) and a metrics JSON with the settings,
seeds, sizes, the latent rescaling and the lineage.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import torch

from ldm.autoencoder.checkpoint import autoencoder_sha256, load_autoencoder
from ldm.data.grids import save_titled_columns
from ldm.data.loader import shard_urls
from ldm.data.shards import sha256_file, shards_sha256
from ldm.diffusion.config import SamplerSettings
from ldm.errors import InvalidInput
from ldm.label_maps.pairing import zip_label_maps
from ldm.latent_diffusion.checkpoint import load_ldm
from ldm.latent_diffusion.generate import rescaling_warning
from ldm.latent_diffusion.semantic import check_semantic_model, evaluation_columns, sample_from_label_maps, upscale_maps
from ldm.model_dir import AUTOENCODER, LDM_SEMANTIC, WEIGHTS
from ldm.reports import write_json
from stages.cli import arg, stage_main
from stages.params import Params, lineage, to_config

log = logging.getLogger("stages.evaluate_semantic")
PICTURE = "semantic.png"


@dataclass(frozen=True)
class Paths:
    """The stage's inputs and outputs, as dvc.yaml names them."""

    models: Path = arg("folder with autoencoder/ and ldm_semantic/")
    images: Path = arg("folder of {train,val}-NNNNNN.tar image shards")
    label_maps: Path = arg("folder of the label_maps stage's shards beside them")
    metrics: Path = arg("output JSON: settings, seeds, sizes, the latent scale, lineage")
    grids: Path = arg(f"output folder: {PICTURE}, label map | real image | sample | sample at scale x")


def _val_rows(paths: Paths, count: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(label maps [N x H x W] long, images [N x 3 x H x W] uint8, keys) of `count` val samples spread over the split."""
    val = [Path(url).name for url in shard_urls(paths.images, "val")]
    pairs = list(zip_label_maps([paths.images / n for n in val], [paths.label_maps / n for n in val]))
    if not pairs:
        raise InvalidInput(f"{paths.images}: no val images; run `dvc repro download label_maps`")
    chosen = list(islice(pairs[:: max(1, len(pairs) // count)], count))
    maps = torch.from_numpy(np.stack([found.label_map for _, found in chosen]))
    images = torch.from_numpy(np.stack([image.image for image, _ in chosen])).permute(0, 3, 1, 2)
    return maps, images.contiguous(), [image.key for image, _ in chosen]


def run(params: Params, paths: Paths) -> dict:
    """Sample from val label maps at 1x and scale x; write the picture and the metrics."""
    p = params.evaluate_semantic
    torch.set_num_threads(p.threads)
    settings = to_config(p.sampling, SamplerSettings)
    autoencoder, card = load_autoencoder(paths.models / AUTOENCODER)
    loaded = load_ldm(paths.models / LDM_SEMANTIC)
    check_semantic_model(loaded, str(paths.models / LDM_SEMANTIC))
    maps, images, keys = _val_rows(paths, p.maps)
    f, seeds = autoencoder.downsample_factor, [p.seed + i for i in range(len(keys))]
    sizes, samples, seconds = {}, {}, {}
    for factor in (1, p.scale):
        start, grown = time.perf_counter(), upscale_maps(maps, factor)
        samples[factor] = sample_from_label_maps(loaded, autoencoder.decode, grown, seeds, settings, f=f,
                                                 batch_size=p.batch_size, source=f"val label maps at {factor}x")
        seconds[factor] = round(time.perf_counter() - start, 2)
        sizes[f"{factor}x"] = {"size": list(grown.shape[-2:]), "latent_size": [s // f for s in grown.shape[-2:]]}
    columns = evaluation_columns(maps, images, samples[1], samples[p.scale], p.scale)
    stand_in = (loaded.card.label_format is not None and loaded.card.label_format.name == "stand-in")
    if stand_in:
        columns = {("label map (stand-in)" if title == "label map" else title): tiles for title, tiles in columns.items()}
    paths.grids.mkdir(parents=True, exist_ok=True)
    save_titled_columns(columns, paths.grids / PICTURE, [key[:10] for key in keys])
    report = {
        "stage": "evaluate_semantic", "preset": loaded.card.preset, "keys": keys, "seeds": seeds,
        "label_maps": ("stand-in (k-means regions of colour and position, not a segmentation)" if stand_in
                       else "dataset label maps"),
        "label_format": loaded.card.label_format.to_dict() if loaded.card.label_format else None,
        "sampling": settings.to_dict(), "sizes": sizes, "seconds": {f"{k}x": v for k, v in seconds.items()},
        "trained_size": [s * f for s in loaded.model.config.latent_size],
        "latent_rescaling": {"scale_factor": loaded.scale_factor, "first_stage": card.model.kind,
                             "warning": rescaling_warning(card.model.kind, loaded.scale_factor)},  # Sec. C.1
        "picture": str(paths.grids / PICTURE),
        "lineage": lineage({"evaluate_semantic": p}, {
            "ldm_semantic": sha256_file(paths.models / LDM_SEMANTIC / WEIGHTS), "autoencoder": autoencoder_sha256(
                paths.models / AUTOENCODER), "val_images": shards_sha256(shard_urls(paths.images, "val")),
            "val_label_maps": shards_sha256(shard_urls(paths.label_maps, "val"))}),
    }
    write_json(paths.metrics, report)
    log.info("sampled %d val label maps at %s and %s px in %s s; wrote %s", len(keys), sizes["1x"]["size"],
             sizes[f"{p.scale}x"]["size"], seconds, paths.grids / PICTURE)
    return report


main = stage_main(run, Paths, __doc__)


if __name__ == "__main__":
    sys.exit(main())
