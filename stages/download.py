"""Stage `download`: a dataset source -> webdataset image shards + a report.

Sources (params `download.source`): `embedded` photographs cut into multi-scale
crops, an image `folder`, or a `manifest` of URLs with sha256. Folder and
manifest images are centre-cropped to a square and area-resized to
`data.resolution`. Bad inputs are converted or skipped with their reason
(`download.on_bad_input: fail` makes the first one fatal). Every sample key
names its split: `<class>_<split>_<n>` for the embedded photographs,
`<split>_<hash of the input path>` for a folder or manifest.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ldm.data.embedded import PHOTOS, embedded_samples, load_photo
from ldm.data.fetch import FetchFailed, fetch_all, read_manifest
from ldm.data.folder import UNLABELLED, DataError, Item, default_caption, sample_key, scan_folder, split_of
from ldm.data.images import BadImage, center_square, crop_resize, decode_image
from ldm.data.schema import ImageSample
from ldm.data.shards import AtomicFolder, write_split
from ldm.errors import UserError
from ldm.reports import write_json
from stages.cli import arg, stage_main
from stages.params import Params, lineage

log = logging.getLogger("stages.download")
SPLITS = ("train", "val")


class BadInputFatal(UserError, RuntimeError):
    """A bad input while `download.on_bad_input` is `fail`."""


@dataclass(frozen=True)
class Paths:
    """Where the stage writes: shard folder, report, download cache."""

    out: Path = arg("output folder of {train,val}-NNNNNN.tar image shards")
    report: Path = arg("output JSON: counts, classes, skipped and converted inputs, lineage")
    cache: Path = arg("download cache of a manifest source (kept across runs)")


def _sample(key: str, sample: dict) -> ImageSample:
    """A prepared sample -> the typed shard sample."""
    meta = {"class_name": sample["class_name"], "caption": sample["caption"], **sample["meta"]}
    return ImageSample(key=key, image=sample["image"], label=sample["label"], caption=sample["caption"], meta=meta)


def _keyed(split: str, samples: Iterator[dict]) -> Iterator[ImageSample]:
    """Embedded crops keyed `<class>_<split>_<n>` (the split bound now, not when the stream is read)."""
    for i, sample in enumerate(samples):
        yield _sample(f"{sample['class_name']}_{split}_{i:05d}", sample)


# ------------------------------------------------------------------- embedded


def _embedded(params: Params) -> tuple[dict[str, Iterator[ImageSample]], list[str], dict[str, str]]:
    """Crops of the embedded photographs per split, class names, input hashes."""
    cfg = params.download.embedded
    totals = {"train": cfg.train_crops, "val": cfg.val_crops}
    streams = {}
    for split in SPLITS:
        samples = embedded_samples(split, totals[split], params.data.resolution, params.download.seed, cfg.val_fraction, cfg.max_scale)
        streams[split] = _keyed(split, samples)
    inputs = {photo.source: hashlib.sha256(load_photo(photo).tobytes()).hexdigest() for photo in PHOTOS}
    return streams, [photo.name for photo in PHOTOS], inputs


# -------------------------------------------------------------- folder/manifest


def _prepare(job: tuple[str, str, int]) -> tuple[str, dict | None, str | None, list[str], str]:
    """(input name, path, resolution) -> (name, sample or None, reason or None, notes, sha256)."""
    name, path, resolution = job
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return name, None, f"cannot be read: {exc.strerror or exc}", [], ""
    digest = hashlib.sha256(data).hexdigest()
    try:
        image, notes = decode_image(data)
    except BadImage as exc:
        return name, None, str(exc), [], digest
    height, width = image.shape[:2]
    if min(height, width) < resolution:
        return name, None, f"{height}x{width} is smaller than data.resolution {resolution}", notes, digest
    box = center_square(height, width)
    meta = {"original_size": [height, width], "crop_box": [box[0], box[1], box[2], box[2]], "conversions": notes}
    return name, {"image": crop_resize(image, box, resolution), "meta": meta}, None, notes, digest


class _Collector:
    """Turns decoded items into per-split encoded samples, recording skips and conversions."""

    def __init__(self, params: Params, val_fraction: float):
        self.params, self.val_fraction = params, val_fraction
        self.skipped: list[dict] = []
        self.ignored: list[dict] = []
        self.converted: list[dict] = []
        self.inputs: dict[str, str] = {}
        self.splits: dict[str, list[ImageSample]] = {split: [] for split in SPLITS}

    def skip(self, name: str, reason: str) -> None:
        if self.params.download.on_bad_input == "fail":
            raise BadInputFatal(f"{name}: {reason} (download.on_bad_input is 'fail'; set it to 'skip' to pass over bad inputs)")
        log.warning("skipping %s: %s", name, reason)
        self.skipped.append({"input": name, "reason": reason})

    def collect(self, items: list[Item], sources: dict[str, str], class_names: list[str]) -> None:
        seen: dict[str, str] = {}
        labels = {name: index for index, name in enumerate(class_names)}
        jobs = [(item.relpath, str(item.path), self.params.data.resolution) for item in items]
        by_name = {item.relpath: item for item in items}
        with ProcessPoolExecutor(max_workers=self.params.download.workers) as pool:
            results = pool.map(_prepare, jobs, chunksize=16)
            for name, sample, reason, notes, digest in tqdm(results, total=len(jobs), desc="decode", unit="img"):
                if digest:
                    self.inputs[name] = digest
                if reason is None and digest in seen:
                    reason = f"same content as {seen[digest]}"
                if reason is not None:
                    self.skip(name, reason)
                    continue
                seen[digest] = name
                if notes:
                    self.converted.append({"input": name, "notes": notes})
                item = by_name[name]
                sample.update(label=labels[item.class_name], class_name=item.class_name, caption=item.caption)
                sample["meta"]["source"] = sources[name]
                split = split_of(name, self.val_fraction, self.params.download.seed)
                self.splits[split].append(_sample(f"{split}_{sample_key(name)}", sample))


def _decode_items(params: Params, items: list[Item], sources: dict[str, str], val_fraction: float,
                  failed: list[dict], ignored: list[dict]) -> tuple[_Collector, list[str]]:
    """Decode `items` into per-split samples; `failed` are inputs already known to be bad."""
    class_names = sorted({item.class_name for item in items})
    collector = _Collector(params, val_fraction)
    collector.ignored = ignored
    for row in failed:
        collector.skip(row["input"], row["reason"])
    collector.collect(items, sources, class_names)
    return collector, class_names


def _folder(params: Params) -> tuple[_Collector, list[str]]:
    cfg = params.download.folder
    items, ignored = scan_folder(cfg.path, cfg.captions)
    sources = {item.relpath: f"folder:{item.relpath}" for item in items}
    return _decode_items(params, items, sources, cfg.val_fraction, [], ignored)


def _manifest(params: Params, cache: Path) -> tuple[_Collector, list[str]]:
    cfg = params.download.manifest
    entries = read_manifest(cfg.path)
    with tqdm(total=len(entries), desc="download", unit="file") as bar:
        results = fetch_all(entries, cache, workers=cfg.workers, retries=cfg.retries, timeout_s=cfg.timeout_s, on_done=bar.update)
    items, failed, sources = [], [], {}
    for entry, result in zip(entries, results):
        if isinstance(result, FetchFailed):
            failed.append({"input": entry.url, "reason": str(result)})
            continue
        class_name = entry.class_name or UNLABELLED
        items.append(Item(entry.url, result, class_name, entry.caption or default_caption(class_name)))
        sources[entry.url] = entry.url
    if not items:
        raise DataError(f"{cfg.path}: none of the {len(entries)} files could be downloaded: {failed[0]['reason']}")
    return _decode_items(params, items, sources, cfg.val_fraction, failed, [])


# ------------------------------------------------------------------------- run


def _count(samples: Iterable[ImageSample], counter: Counter) -> Iterator[ImageSample]:
    for sample in samples:
        counter[sample.label] += 1
        yield sample


def run(params: Params, paths: Paths) -> dict:
    """Write the shards and the report; return the report."""
    source = params.download.source
    skipped: list[dict] = []
    converted: list[dict] = []
    ignored: list[dict] = []
    if source == "embedded":
        streams, class_names, inputs = _embedded(params)
    else:
        collector, class_names = _folder(params) if source == "folder" else _manifest(params, paths.cache)
        streams, inputs = collector.splits, collector.inputs
        skipped, converted, ignored = collector.skipped, collector.converted, collector.ignored
        for split in SPLITS:
            if not streams[split]:
                log.warning("split %s is empty; adjust val_fraction or add images", split)
    shards, classes = {}, {}
    with AtomicFolder(paths.out) as staging:
        for split in SPLITS:
            counter: Counter = Counter()
            stream = tqdm(_count(streams[split], counter), desc=f"write {split}", unit="img")
            for info in write_split(stream, staging, split, params.data.shard_size):
                shards[info.name] = {"samples": info.samples, "sha256": info.sha256}
            classes[split] = {class_names[label]: n for label, n in sorted(counter.items())}
    report = {
        "stage": "download",
        "source": source,
        "resolution": params.data.resolution,
        "counts": {split: sum(classes[split].values()) for split in SPLITS},
        "classes": classes,
        "class_names": class_names,
        "shards": shards,
        "skipped": skipped,
        "converted": converted,
        "ignored": ignored,
        "lineage": lineage({"data": params.data, "download": params.download}, inputs),
    }
    write_json(paths.report, report)
    log.info("wrote %d train and %d val samples in %d shards to %s", report["counts"]["train"], report["counts"]["val"], len(shards), paths.out)
    return report


main = stage_main(run, Paths, __doc__)


if __name__ == "__main__":
    sys.exit(main())
