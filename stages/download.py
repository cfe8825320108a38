"""Stage `download`: a dataset source -> webdataset image shards + a report.

Sources (params `download.source`): `embedded` photographs cut into multi-scale
crops, an image `folder`, or a `manifest` of URLs with sha256. Folder and
manifest images are centre-cropped to a square and area-resized to
`data.resolution`. Bad inputs are converted or skipped with their reason
(`download.on_bad_input: fail` makes the first one fatal). Every sample key
names its split: `<class>_<split>_<n>` for the embedded photographs,
`<split>_<hash of the input path>` for a folder or manifest.

Each split is written in the seeded order of `ldm.data.order.write_order`
(`download.seed`), global across classes, so every shard holds the class mix of
the whole split; the bytes depend on the seed, never on `download.workers`.
Folder and manifest inputs go through two passes: a check of every input in
listed order (the image header, and the content hash of files whose size
another file shares), which finds unreadable, non-image, too small and
duplicate inputs, then the decode in write order. Only paths are permuted and
at most a few decoded images per worker are in flight, so memory does not grow
with the dataset.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from ldm.data import remote
from ldm.data.embedded import PHOTOS, crop_plan, cut_crop, load_photo
from ldm.data.fetch import FetchFailed, fetch_all, read_manifest
from ldm.data.folder import UNLABELLED, DataError, Item, default_caption, sample_key, scan_folder, split_of
from ldm.data.images import BadImage, center_square, crop_resize, decode_image
from ldm.data.location import Location
from ldm.data.order import write_order
from ldm.data.schema import ImageSample
from ldm.data.shards import MANIFEST, AtomicFolder, sha256_file, write_manifest, write_split
from ldm.errors import UserError
from ldm.parallel import TaskLog, TaskPool, map_tasks, task_pool
from ldm.reports import write_json
from ldm.storage.settings import S3Settings
from stages.cli import arg, stage_main
from stages.params import Params, lineage, to_config

log = logging.getLogger("stages.download")
SPLITS = ("train", "val")


class BadInputFatal(UserError, RuntimeError):
    """A bad input while `download.on_bad_input` is `fail`."""


@dataclass(frozen=True)
class Paths:
    """Where the stage writes: shard folder, report, download cache."""

    out: Location = arg("output folder or s3://bucket/prefix of {train,val}-NNNNNN.tar image shards (+ shards.json)")
    report: Path = arg("output JSON: counts, classes, skipped and converted inputs, lineage")
    cache: Path = arg("download cache of a manifest source (kept across runs)")


def _sample(key: str, sample: dict) -> ImageSample:
    """A prepared sample -> the typed shard sample."""
    meta = {"class_name": sample["class_name"], "caption": sample["caption"], **sample["meta"]}
    return ImageSample(key=key, image=sample["image"], label=sample["label"], caption=sample["caption"], meta=meta)


# ------------------------------------------------------------------- embedded


def _embedded_split(params: Params, images: list[np.ndarray], split: str) -> Iterator[ImageSample]:
    """One split's crops keyed `<class>_<split>_<n>` (n counts them class by class), cut in write order."""
    cfg = params.download.embedded
    total = cfg.train_crops if split == "train" else cfg.val_crops
    plan = crop_plan(images, split, total, params.data.resolution, params.download.seed, cfg.val_fraction, cfg.max_scale)
    keys = [f"{PHOTOS[crop.label].name}_{split}_{n:05d}" for n, crop in enumerate(plan)]
    for n in write_order(keys, params.download.seed):
        yield _sample(keys[n], cut_crop(images, plan[n], params.data.resolution))


def _embedded(params: Params) -> tuple[dict[str, Iterator[ImageSample]], list[str], dict[str, str]]:
    """Crops of the embedded photographs per split, class names, input hashes."""
    images = [load_photo(photo) for photo in PHOTOS]  # 16 photographs, about 20 MB
    streams = {split: _embedded_split(params, images, split) for split in SPLITS}
    inputs = {photo.source: hashlib.sha256(image.tobytes()).hexdigest() for photo, image in zip(PHOTOS, images)}
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


def _probe(job: tuple[str, str, int]) -> tuple[int, str | None, str]:
    """(input name, path, resolution) -> (file size, reason or None, sha256 or ""), from the image header.

    A usable input costs a stat and a header read. One the header shows unusable (or no decoder
    recognises) is decoded in full, so its reason reads exactly as the decode's.
    """
    _, path, resolution = job
    size, usable = 0, False
    try:
        size = os.path.getsize(path)
        with Image.open(path) as image:  # lazy: parses the header, decodes no pixels
            usable = min(image.size) >= resolution
    except Exception:  # noqa: BLE001 - whatever it was, the full decode below names it
        usable = False
    if usable:
        return size, None, ""
    _, _, reason, _, digest = _prepare(job)
    return size, reason, digest


class _Collector:
    """Checks the inputs in listed order (pass 1), then decodes each split in write order (pass 2)."""

    def __init__(self, params: Params, val_fraction: float, sources: dict[str, str], class_names: list[str]):
        self.params, self.val_fraction, self.sources, self.class_names = params, val_fraction, sources, class_names
        self.skipped: list[dict] = []
        self.ignored: list[dict] = []
        self.converted: list[dict] = []
        self.inputs: dict[str, str] = {}
        self.splits: dict[str, list[Item]] = {split: [] for split in SPLITS}
        self.tasks = TaskLog()

    def pool(self) -> AbstractContextManager[TaskPool]:
        """The local process pool, or the Dask cluster of `cluster.address`."""
        cluster = self.params.cluster
        return task_pool(self.params.download.workers, cluster.address, cluster.timeout_s)

    def map(self, pool: TaskPool, fn: Callable, jobs: list, items: list[Item], desc: str, ahead: int = 0) -> Iterator:
        """`fn` over `jobs` (one per input of `items`, absolute paths: a worker's cwd is its own) on `pool`:
        in order, retried, counted in `tasks`."""
        return map_tasks(pool, fn, jobs, [item.relpath for item in items], retries=self.params.cluster.retries,
                         log_to=self.tasks, desc=desc, ahead=ahead)

    def digests(self, pool: TaskPool, items: list[Item], probes: list[tuple[int, str | None, str]]) -> dict[str, str]:
        """sha256 by name of the usable inputs whose byte size another one shares: the only possible duplicates."""
        sizes = Counter(size for size, reason, _ in probes if reason is None)
        shared = [item for item, (size, reason, _) in zip(items, probes) if reason is None and sizes[size] > 1]
        paths = [Path(item.path).resolve() for item in shared]
        return dict(zip((item.relpath for item in shared), self.map(pool, sha256_file, paths, shared, "hash")))

    def skip(self, name: str, reason: str) -> None:
        if self.params.download.on_bad_input == "fail":
            raise BadInputFatal(f"{name}: {reason} (download.on_bad_input is 'fail'; set it to 'skip' to pass over bad inputs)")
        log.warning("skipping %s: %s", name, reason)
        self.skipped.append({"input": name, "reason": reason})

    def plan(self, items: list[Item]) -> None:
        """Pass 1: unusable and duplicate inputs skipped in listed order (the first copy stays); the rest split."""
        jobs = [(item.relpath, str(Path(item.path).resolve()), self.params.data.resolution) for item in items]
        with self.pool() as pool:
            probes = list(self.map(pool, _probe, jobs, items, "check"))
            digests = self.digests(pool, items, probes)
        seen: dict[str, str] = {}
        for item, (_, reason, digest) in zip(items, probes):
            digest = digest or digests.get(item.relpath, "")
            if digest:
                self.inputs[item.relpath] = digest
            if reason is None and item.relpath in digests:
                reason = f"same content as {seen[digest]}" if digest in seen else None
                seen.setdefault(digest, item.relpath)
            if reason is not None:
                self.skip(item.relpath, reason)
                continue
            self.splits[split_of(item.relpath, self.val_fraction, self.params.download.seed)].append(item)

    def samples(self, split: str) -> Iterator[ImageSample]:
        """Pass 2: the split's inputs decoded in write order (`write_order` of their names) into shard samples."""
        listed = self.splits[split]
        items = [listed[i] for i in write_order([item.relpath for item in listed], self.params.download.seed)]
        jobs = [(item.relpath, str(Path(item.path).resolve()), self.params.data.resolution) for item in items]
        labels = {name: index for index, name in enumerate(self.class_names)}
        workers = self.params.download.workers
        with self.pool() as pool:
            for item, (name, sample, reason, notes, digest) in zip(items, self.map(pool, _prepare, jobs, items, f"decode {split}",
                                                                                  ahead=4 * workers)):
                if digest:
                    self.inputs[name] = digest
                if reason is not None:  # corrupt pixel data past a good header
                    self.skip(name, reason)
                    continue
                if notes:
                    self.converted.append({"input": name, "notes": notes})
                sample.update(label=labels[item.class_name], class_name=item.class_name, caption=item.caption)
                sample["meta"]["source"] = self.sources[name]
                yield _sample(f"{split}_{sample_key(name)}", sample)


def _collect(params: Params, items: list[Item], sources: dict[str, str], val_fraction: float,
             failed: list[dict], ignored: list[dict]) -> _Collector:
    """Check `items` (pass 1) into a collector whose `samples` decode them; `failed` are inputs already known to be bad."""
    collector = _Collector(params, val_fraction, sources, sorted({item.class_name for item in items}))
    collector.ignored = ignored
    for row in failed:
        collector.skip(row["input"], row["reason"])
    collector.plan(items)
    return collector


def _folder(params: Params) -> _Collector:
    cfg = params.download.folder
    items, ignored = scan_folder(cfg.path, cfg.captions)
    sources = {item.relpath: f"folder:{item.relpath}" for item in items}
    return _collect(params, items, sources, cfg.val_fraction, [], ignored)


def _manifest(params: Params, cache: Path) -> _Collector:
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
    return _collect(params, items, sources, cfg.val_fraction, failed, [])


# ------------------------------------------------------------------------- run


def _count(samples: Iterable[ImageSample], counter: Counter) -> Iterator[ImageSample]:
    for sample in samples:
        counter[sample.label] += 1
        yield sample


def _by_input(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda row: row["input"])


def run(params: Params, paths: Paths) -> dict:
    """Write the shards and the report; return the report."""
    source = params.download.source
    collector = None
    if source == "embedded":
        streams, class_names, inputs = _embedded(params)
    else:
        collector = _folder(params) if source == "folder" else _manifest(params, paths.cache)
        streams = {split: collector.samples(split) for split in SPLITS}
        class_names, inputs = collector.class_names, collector.inputs
        for split in SPLITS:
            if not collector.splits[split]:
                log.warning("split %s is empty; adjust val_fraction or add images", split)
    remote.configure(to_config(params.storage.s3, S3Settings))
    shards, classes, written = {}, {}, []
    with AtomicFolder(paths.out, marker=MANIFEST) as staging:
        for split in SPLITS:
            counter: Counter = Counter()
            stream = _count(streams[split], counter)
            if collector is None:  # the decode tasks of a folder or manifest count themselves
                stream = tqdm(stream, desc=f"write {split}", unit="img")
            for info in write_split(stream, staging, split, params.data.shard_size):
                shards[info.name] = {"samples": info.samples, "sha256": info.sha256}
                written.append(info)
            classes[split] = {class_names[label]: n for label, n in sorted(counter.items())}
        write_manifest(staging, written)
    report = {
        "stage": "download",
        "source": source,
        "resolution": params.data.resolution,
        "counts": {split: sum(classes[split].values()) for split in SPLITS},
        "classes": classes,
        "class_names": class_names,
        "shards": shards,
        "skipped": _by_input(collector.skipped) if collector else [],
        "converted": _by_input(collector.converted) if collector else [],
        "ignored": collector.ignored if collector else [],
        "tasks": (collector.tasks if collector else TaskLog(0, "in process", 1)).record().to_dict(),
        "lineage": lineage({"data": params.data, "download": params.download}, inputs),
    }
    write_json(paths.report, report)
    log.info("wrote %d train and %d val samples in %d shards to %s", report["counts"]["train"], report["counts"]["val"], len(shards), paths.out)
    return report


main = stage_main(run, Paths, __doc__)


if __name__ == "__main__":
    sys.exit(main())
