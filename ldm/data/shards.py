"""Deterministic webdataset shards: the one tar writer and reader of every stage.

A shard is a tar of samples (fields: `ldm.data.schema`). Tar headers carry no
time, owner or host, so equal samples give equal bytes; a shard is written to a
temporary name and moved into place, and a split into a temporary folder moved
into place whole (or uploaded to a bucket with its `shards.json` last, see
`ldm.data.remote`), so a failed run never leaves a shard that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import webdataset as wds

from ldm.config import Config
from ldm.data.location import Location, is_url, join, name_of
from ldm.data.remote import ShardList, publish, read_marker, sha256_of, sha256_stream, staging_for
from ldm.data.schema import RawSample, Sample
from ldm.data.tar_read import MANIFEST, checked_tar_samples
from ldm.errors import InvalidInput
from ldm.storage.settings import S3Settings


@dataclass(frozen=True)
class ShardInfo:
    """One written shard: its file name, sample count and content hash."""

    name: str
    samples: int
    sha256: str


@dataclass(frozen=True)
class ShardManifest(Config):
    """shards.json of a shard folder: each shard's sample count and sha256; its presence marks the folder complete."""

    section = MANIFEST

    samples: dict[str, int]  # shard file name -> samples
    sha256: dict[str, str]  # shard file name -> hex sha256 of its bytes

    @classmethod
    def of(cls, shards: list[ShardInfo]) -> ShardManifest:
        """The manifest of these written shards, by name."""
        ordered = sorted(shards, key=lambda info: info.name)
        return cls({info.name: info.samples for info in ordered}, {info.name: info.sha256 for info in ordered})


def write_manifest(folder: Path, shards: list[ShardInfo]) -> None:
    """shards.json into a (staging) folder; `AtomicFolder(..., marker=MANIFEST)` publishes it last."""
    (folder / MANIFEST).write_text(json.dumps(ShardManifest.of(shards).to_dict(), indent=2, sort_keys=True) + "\n")


def read_manifest(folder: Location, stage: str) -> ShardManifest:
    """shards.json of a complete folder; errors name the file and the `stage` that writes the folder."""
    data = read_marker(folder, MANIFEST, stage)
    try:
        return ShardManifest.from_dict(json.loads(data))
    except ValueError as exc:
        raise InvalidInput(f"{join(folder, MANIFEST)}: {exc}; re-run {stage}") from None


def require_complete(folder: Location, stage: str) -> None:
    """Refuse a shard folder in a bucket without its shards.json (an upload cut short); a local folder is whole."""
    if is_url(folder):
        read_manifest(folder, stage)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a local file, read in chunks."""
    with open(path, "rb") as handle:
        return sha256_stream(handle)


def shards_sha256(urls: list[str]) -> str:
    """One hash for a set of shards: sha256 over the sorted (name, sha256) of each file, the same on disk or in a bucket."""
    digest = hashlib.sha256()
    for url in sorted(urls):
        digest.update(f"{name_of(url)}:{sha256_of(url)}\n".encode())
    return digest.hexdigest()


def _chunks(samples: Iterable[dict], size: int) -> Iterator[list[dict]]:
    batch: list[dict] = []
    for sample in samples:
        batch.append(sample)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def write_shard(path: str | Path, samples: Iterable[Sample]) -> ShardInfo:
    """Write typed samples as one deterministic tar at `path` (a temp file moved into place)."""
    path = Path(path)
    temp = path.with_name(f".{path.name}.partial")
    count = 0
    with open(temp, "wb") as stream:
        # mtime 0, fixed owner and mode: the tar bytes depend on the samples only.
        writer = wds.TarWriter(stream, user="ldm", group="ldm", mode=0o644, mtime=0.0, encoder=False)
        for sample in samples:
            writer.write(sample.encode())
            count += 1
        writer.close()
    os.replace(temp, path)
    return ShardInfo(path.name, count, sha256_file(path))


def write_split(samples: Iterable[Sample], folder: Path, split: str, shard_size: int) -> list[ShardInfo]:
    """Write `samples` as `{split}-NNNNNN.tar` in `folder`, `shard_size` per shard, in order."""
    folder.mkdir(parents=True, exist_ok=True)
    return [write_shard(folder / f"{split}-{index:06d}.tar", batch) for index, batch in enumerate(_chunks(samples, shard_size))]


class AtomicFolder:
    """Build an output folder in a local staging folder and publish it only on success (`ldm.data.remote.publish`).

    A local destination is swapped in whole; an s3:// one is uploaded with its `marker` (which the
    body writes into the staging folder) last.
    """

    def __init__(self, destination: Location, marker: str = ""):
        if is_url(destination) and not marker:
            raise ValueError(f"{destination}: a folder in a bucket needs a marker file written last")
        self.destination, self.marker = destination if is_url(destination) else Path(destination), marker
        self.staging = staging_for(destination, f"-{os.getpid()}")

    def __enter__(self) -> Path:
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir(parents=True)
        return self.staging

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            return
        publish(self.staging, self.destination, self.marker)


def read_shards(paths: list[str] | list[Path], settings: S3Settings | None = None) -> Iterator[RawSample]:
    """The raw samples (`__key__` plus undecoded fields) of these shards, in order, on any rank (no node split).

    `settings`: the S3 client settings for s3:// URLs, when this runs in another process than the one
    that configured them (default: this process's, `ldm.data.remote.configure`).
    """
    return iter(wds.DataPipeline(ShardList([str(p) for p in paths], settings), checked_tar_samples()))
