"""Stage `masks`: image shards -> mask shards for inpainting (Sec. 4.5, D.2.2).

Every image gets one large mask after LaMa's generator (the paper's [85]):
thick, medium or thin strokes or boxes, the kind drawn with `masks.proportions`,
hiding between `masks.min_coverage` and `masks.max_coverage` of the image.
A mask's seed is a hash of `masks.seed` and the sample key, so the output does
not depend on the number of workers or on shard order. The mask shard of an
image shard has its name and its key order (`MaskSample`); the images stay in
their shards, for a later stage to zip by key.
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
from ldm.masks.shards import MaskJob, grid_columns, summarize, write_mask_shard, zip_masks
from ldm.parallel import TaskLog, map_tasks, task_pool
from ldm.reports import write_json
from ldm.storage.settings import S3Settings
from stages.cli import arg, stage_main
from stages.params import Params, lineage, to_config

log = logging.getLogger("stages.masks")


@dataclass(frozen=True)
class Paths:
    """The stage's input shard folder and its outputs."""

    images: Path = arg("folder of {train,val}-NNNNNN.tar image shards")
    out: Location = arg("output folder or s3://bucket/prefix of mask shards, one per image shard (+ shards.json)")
    report: Path = arg("output JSON: masks per kind, coverage quantiles, shards, tasks, lineage")
    grid: Path = arg("output PNG: val images | masks | masked images, a row each")


def run(params: Params, paths: Paths) -> dict:
    """Draw a mask for every image; write mask shards, the report and the grid."""
    cfg = params.masks
    sources = sorted(paths.images.glob("*.tar"))
    if not sources:
        raise InputNotFound(f"{paths.images}: no image shards; run the download stage first (dvc repro download)")
    corrupt = survey(sources, params.data.on_corrupt)
    sources = corrupt.keep(sources)
    remote.configure(to_config(params.storage.s3, S3Settings))
    tasks, config = TaskLog(), cfg.config()
    with AtomicFolder(paths.out, marker=MANIFEST) as staging:
        jobs = [MaskJob(str(src.resolve()), str(Path(staging).resolve() / src.name), config, cfg.seed) for src in sources]
        with task_pool(cfg.workers, params.cluster.address, params.cluster.timeout_s) as pool:
            written = list(map_tasks(pool, write_mask_shard, jobs, [src.name for src in sources],
                                     retries=params.cluster.retries, log_to=tasks, desc="masks"))
        write_manifest(staging, [shard.shard for shard in written])
        counts = Counter()
        for shard in written:
            counts[shard.shard.name.split("-")[0]] += shard.shard.samples
        names = [src.name for src in sources]
        shown = [name for name in names if name.startswith("val-")] or names  # val rows, or any without a val split
        columns, labels = grid_columns(zip_masks([paths.images / n for n in shown], [staging / n for n in shown]),
                                       cfg.grid_images, counts["val"] or sum(counts.values()))
        save_titled_columns(columns, paths.grid, labels)
    report = {
        "stage": "masks",
        "counts": dict(sorted(counts.items())),
        **summarize([record for shard in written for record in shard.records]),
        "shards": {shard.shard.name: {"samples": shard.shard.samples, "sha256": shard.shard.sha256} for shard in written},
        "corrupt": corrupt.to_dict(),
        "tasks": tasks.record().to_dict(),
        "lineage": lineage({"masks": cfg}, {src.name: sha256_file(src) for src in sources}),
    }
    write_json(paths.report, report)
    log.info("wrote %s masks to %s; kinds %s; median coverage %.3f", sum(counts.values()), paths.out, report["kinds"],
             report["coverage"].get("median", float("nan")))
    return report


main = stage_main(run, Paths, __doc__)


if __name__ == "__main__":
    sys.exit(main())
