"""Deterministic webdataset shards: the one tar writer and reader of every stage.

A shard is a tar of samples (fields: `ldm.data.schema`). Tar headers carry no
time, owner or host, so equal samples give equal bytes; a shard is written to a
temporary name and moved into place, and a split into a temporary folder moved
into place whole, so a failed run never leaves a shard that looks complete.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import webdataset as wds

from ldm.data.schema import RawSample, Sample


@dataclass(frozen=True)
class ShardInfo:
    """One written shard: its file name, sample count and content hash."""

    name: str
    samples: int
    sha256: str


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def shards_sha256(urls: list[str]) -> str:
    """One hash for a set of shards: sha256 over the sorted (name, sha256) of each file."""
    digest = hashlib.sha256()
    for url in sorted(urls):
        digest.update(f"{Path(url).name}:{sha256_file(url)}\n".encode())
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
    """Build an output folder beside its destination and swap it in only on success."""

    def __init__(self, destination: str | Path):
        self.destination = Path(destination)
        self.staging = self.destination.with_name(f".{self.destination.name}.partial-{os.getpid()}")

    def __enter__(self) -> Path:
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir(parents=True)
        return self.staging

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            return
        shutil.rmtree(self.destination, ignore_errors=True)
        os.replace(self.staging, self.destination)


def read_shards(paths: list[str] | list[Path]) -> Iterator[RawSample]:
    """The raw samples (`__key__` plus undecoded fields) of these shards, in order, on any rank (no node split)."""
    return iter(wds.DataPipeline(wds.SimpleShardList([str(p) for p in paths]), wds.tarfile_to_samples()))
