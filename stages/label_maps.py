"""Stage `label_maps`: image shards -> label-map shards for semantic synthesis and layout-to-image (Sec. 4.3).

Every image gets a label map [H x W] of class ids at its resolution and a layout
(boxes). Maps (params `label_maps.source`): `embedded` computes a seeded
STAND-IN per crop (k-means regions of colour and position, `ldm.data.stand_in_maps`;
not a segmentation), `folder` reads the PNG label map of the image's stem in a
COCO-Stuff, ADE20K or plain-ids format and cuts it with the image's crop box.
Boxes (`label_maps.boxes.source`): a STAND-IN box per connected region of the
map, or a COCO instances JSON / OpenImages box CSV clipped to the crop. A map's
seed is a hash of `label_maps.seed` and the sample key; the label-map shard of
an image shard has its name and key order (`LabelMapSample`), for stage
cache_latents to zip by key.
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ldm.data import remote
from ldm.data.grids import save_titled_columns
from ldm.data.location import Location
from ldm.data.shards import MANIFEST, AtomicFolder, sha256_file, write_manifest
from ldm.data.survey import survey
from ldm.errors import InputNotFound
from ldm.label_maps.boxes import box_classes
from ldm.label_maps.report import grid_columns, summarize
from ldm.label_maps.pairing import zip_label_maps
from ldm.label_maps.shards import LabelMapJob, write_label_map_shard
from ldm.parallel import TaskLog, map_tasks, task_pool
from ldm.reports import write_json
from ldm.storage.settings import S3Settings
from stages.cli import arg, stage_main
from stages.params import Params, lineage, to_config

log = logging.getLogger("stages.label_maps")


@dataclass(frozen=True)
class Paths:
    """The stage's input shard folder and its outputs."""

    images: Path = arg("folder of {train,val}-NNNNNN.tar image shards")
    out: Location = arg("output folder or s3://bucket/prefix of label-map shards, one per image shard (+ shards.json)")
    report: Path = arg("output JSON: counts, classes seen, boxes per image, what the maps are, lineage")
    grid: Path = arg("output PNG: val images | label maps (colourised) | boxes, a row each")


def run(params: Params, paths: Paths) -> dict:
    """Make a label map and layout for every image; write the shards, the report and the picture."""
    cfg = params.label_maps
    config = cfg.config()
    sources = sorted(paths.images.glob("*.tar"))
    if not sources:
        raise InputNotFound(f"{paths.images}: no image shards; run the download stage first (dvc repro download)")
    corrupt = survey(sources, params.data.on_corrupt)
    sources = corrupt.keep(sources)
    remote.configure(to_config(params.storage.s3, S3Settings))
    tasks = TaskLog()
    with AtomicFolder(paths.out, marker=MANIFEST) as staging:
        jobs = [LabelMapJob(str(src.resolve()), str(Path(staging).resolve() / src.name), config) for src in sources]
        with task_pool(cfg.workers, params.cluster.address, params.cluster.timeout_s) as pool:
            written = list(map_tasks(pool, write_label_map_shard, jobs, [src.name for src in sources],
                                     retries=params.cluster.retries, log_to=tasks, desc="label maps"))
        write_manifest(staging, [shard.shard for shard in written])
        counts = Counter()
        for shard in written:
            counts[shard.shard.name.split("-")[0]] += shard.shard.samples
        names = [src.name for src in sources]
        shown = [name for name in names if name.startswith("val-")] or names  # val rows, or any without a val split
        columns, labels = grid_columns(zip_label_maps([paths.images / n for n in shown], [staging / n for n in shown]),
                                       cfg.grid_images, counts["val"] or sum(counts.values()),
                                       stand_in_maps=config.stand_in, stand_in_boxes=config.boxes == "label_map")
        save_titled_columns(columns, paths.grid, labels)
    report = {
        "stage": "label_maps",
        **config.describe(),
        "n_classes": config.map_classes,
        "box_classes": box_classes(config),
        "counts": dict(sorted(counts.items())),
        **summarize([record for shard in written for record in shard.records]),
        "shards": {shard.shard.name: {"samples": shard.shard.samples, "sha256": shard.shard.sha256} for shard in written},
        "corrupt": corrupt.to_dict(),
        "tasks": tasks.record().to_dict(),
        "lineage": lineage({"label_maps": cfg}, {src.name: sha256_file(src) for src in sources}),
    }
    write_json(paths.report, report)
    log.info("wrote %s label maps to %s (%s); %d classes seen, %.2f boxes per image", sum(counts.values()), paths.out,
             report["label_maps"], report["classes_seen"], report["boxes_per_image"]["mean"])
    return report


main = stage_main(run, Paths, __doc__)


if __name__ == "__main__":
    sys.exit(main())
