"""Deterministic webdataset shards.

A shard is a tar of samples `{key}.png`, `{key}.cls`, `{key}.txt`, `{key}.json`.
Tar headers carry no time, owner or host, so equal samples give equal bytes; a
split is written into a temporary folder and moved into place whole, so a failed
run never leaves a shard that looks complete.
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


def encode_json(obj: object) -> bytes:
    """Canonical JSON bytes (sorted keys, no spaces) so equal metadata hashes equally."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _chunks(samples: Iterable[dict], size: int) -> Iterator[list[dict]]:
    batch: list[dict] = []
    for sample in samples:
        batch.append(sample)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def write_split(samples: Iterable[dict[str, bytes | str]], folder: Path, split: str, shard_size: int) -> list[ShardInfo]:
    """Write `samples` (dicts of `__key__` and encoded fields) as `{split}-NNNNNN.tar` in `folder`.

    Fields must already be bytes; the order of samples is the order in the shards.
    """
    folder.mkdir(parents=True, exist_ok=True)
    infos = []
    for index, batch in enumerate(_chunks(samples, shard_size)):
        name = f"{split}-{index:06d}.tar"
        path = folder / name
        with open(path, "wb") as stream:
            # mtime 0, fixed owner and mode: the tar bytes depend on the samples only.
            writer = wds.TarWriter(stream, user="ldm", group="ldm", mode=0o644, mtime=0.0, encoder=False)
            for sample in batch:
                writer.write(sample)
            writer.close()
        infos.append(ShardInfo(name, len(batch), sha256_file(path)))
    return infos


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


def read_shards(paths: list[str | Path]) -> wds.DataPipeline:
    """The raw samples (`__key__` plus undecoded fields) of these shards, in order, on any rank (no node split)."""
    return wds.DataPipeline(wds.SimpleShardList([str(p) for p in paths]), wds.tarfile_to_samples())
