"""Shard folders in an S3 bucket: listing, streaming reads, recorded hashes, and publishing a staged folder.

A shard folder is a `Location` (`ldm.data.location`): a local path or an
`s3://bucket/prefix` URL.
Reads stream through webdataset's `gopen`, whose `s3` scheme this module
registers at import, with boto3 and the client settings of `params.storage.s3`
(`S3Settings`: endpoint, retries, timeouts, checksums). A stage sets them for
its process with `configure`; a pipeline's `ShardList` carries them into
DataLoader worker processes, which start by forkserver without the parent's
module state. Credentials come only from the AWS chain.

A folder is always built in a local staging folder, then `publish`ed: moved
into place on disk; in a bucket, the old marker deleted first, every other
file uploaded (its sha256 in the object's metadata), stale objects removed,
and the marker (`stats.json`, `shards.json`) uploaded last. A reader that
finds the marker finds the whole folder; `read_marker` says what to run when
it is missing.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import tempfile
from fnmatch import fnmatch
from pathlib import Path
from typing import BinaryIO

import webdataset as wds
from webdataset.gopen import gopen_schemes

from ldm.data.location import SCHEME, Location, is_url, join, name_of
from ldm.errors import InputNotFound, InvalidInput
from ldm.storage.backend import NotFound
from ldm.storage.s3 import S3Backend, split_url
from ldm.storage.settings import S3Settings

SHA256 = "sha256"  # the object metadata key that S3Backend.put_file records

_settings = S3Settings()  # this process's client settings (`configure`)


# ---------------------------------------------------------------- client settings


def configure(settings: S3Settings) -> None:
    """The S3 client settings of this process (a stage sets `params.storage.s3` before touching a URL)."""
    global _settings
    _settings = settings


def current() -> S3Settings:
    """The S3 client settings in force in this process."""
    return _settings


@functools.lru_cache(maxsize=16)
def _bucket(bucket: str, settings: S3Settings) -> S3Backend:
    """One client per bucket and settings in a process (a client costs tens of ms to make)."""
    return S3Backend(f"{SCHEME}{bucket}", settings)


def _object(url: str) -> tuple[S3Backend, str]:
    bucket, key = split_url(url)
    return _bucket(bucket, _settings), key


def open_s3(url: str, mode: str = "rb", bufsize: int = 8192, **_: object) -> BinaryIO:
    """webdataset's `gopen` handler of s3:// URLs: a streaming read through boto3."""
    if mode != "rb":
        raise ValueError(f"{url}: s3:// shards are read-only here; stages publish folders whole (ldm.data.remote.publish)")
    backend, key = _object(url)
    try:
        return backend.open_stream(key)
    except NotFound:
        raise InputNotFound(f"{url}: no such object; run the stage that writes it") from None


gopen_schemes["s3"] = open_s3  # every process that imports the shard readers can stream from a bucket


class ShardList(wds.SimpleShardList):
    """webdataset's list of shard URLs, carrying this process's S3 settings into DataLoader workers."""

    def __init__(self, urls: list[str], settings: S3Settings | None = None):
        super().__init__([str(url) for url in urls])
        self.settings = settings or _settings

    def __iter__(self):
        if any(is_url(url) for url in self.urls):
            configure(self.settings)  # a worker's copy of the pipeline brings the parent's settings
        return super().__iter__()


# ------------------------------------------------------------------------ reading


def glob(folder: Location, pattern: str) -> list[str]:
    """The sorted files directly in `folder` whose names match `pattern` (a bucket lists its keys)."""
    if not is_url(folder):
        return sorted(str(path) for path in Path(folder).glob(pattern))
    backend, prefix = _object(str(folder))
    keys = backend.list_keys(f"{prefix}/" if prefix else "")
    start = len(prefix) + 1 if prefix else 0
    return [join(folder, key[start:]) for key in keys if "/" not in key[start:] and fnmatch(key[start:], pattern)]


def read_bytes(location: Location) -> bytes:
    """A small file's bytes; InputNotFound naming it when absent."""
    if not is_url(location):
        try:
            return Path(location).read_bytes()
        except FileNotFoundError:
            raise InputNotFound(f"{location}: no such file") from None
    backend, key = _object(str(location))
    try:
        return backend.get_bytes(key)
    except NotFound:
        raise InputNotFound(f"{location}: no such object") from None


def read_marker(folder: Location, marker: str, stage: str) -> bytes:
    """The marker file of a complete folder; without it, one line naming the stage that writes the folder."""
    try:
        return read_bytes(join(folder, marker))
    except InputNotFound as exc:
        run = f"run `dvc repro {stage}`" if not is_url(folder) else f"run `python -m stages.{stage}` with --out {folder}"
        raise InputNotFound(f"{exc}, so the folder is missing or incomplete; {run}") from None


def sha256_stream(stream: BinaryIO, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a stream, read in chunks."""
    digest = hashlib.sha256()
    while block := stream.read(chunk):
        digest.update(block)
    return digest.hexdigest()


def sha256_of(location: Location) -> str:
    """Hex sha256 of a file or object: the one `publish` recorded in the metadata, else of the streamed bytes."""
    if not is_url(location):
        with open(location, "rb") as handle:
            return sha256_stream(handle)
    backend, key = _object(str(location))
    try:
        recorded = backend.metadata(key).get(SHA256, "")
    except NotFound:
        raise InputNotFound(f"{location}: no such object; run the stage that writes it") from None
    if recorded:
        return recorded
    stream = backend.open_stream(key)
    try:
        return sha256_stream(stream)
    finally:
        stream.close()


# ------------------------------------------------------------------------ writing


def staging_for(destination: Location, suffix: str = "") -> Path:
    """The local folder an output is built in: beside a local destination, in the temp folder for a URL.

    The same path for every process of a node that passes the same `suffix`, so DDP ranks share it.
    """
    if is_url(destination):
        tag = hashlib.sha256(str(destination).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"ldm-{name_of(destination)}-{tag}.partial{suffix}"
    destination = Path(destination)
    return destination.with_name(f".{destination.name}.partial{suffix}")


def publish(staging: Path, destination: Location, marker: str) -> None:
    """Make a complete staging folder the output at `destination` (module docstring); the staging folder goes."""
    if not is_url(destination):
        shutil.rmtree(destination, ignore_errors=True)
        os.replace(staging, destination)
        return
    if not (staging / marker).is_file():
        raise ValueError(f"{staging}: no {marker}; a folder is published with its marker")
    if not split_url(str(destination))[1]:
        raise InvalidInput(f"{destination}: write shards under a prefix (s3://bucket/folder), not a bucket's root")
    backend = S3Backend(str(destination), _settings)
    files = sorted(path.relative_to(staging).as_posix() for path in staging.rglob("*") if path.is_file())
    backend.delete_keys([marker])  # from here until the end, readers see no complete folder
    for key in files:
        if key != marker:
            backend.put_file(key, staging / key, sha256_of(staging / key))
    backend.delete_keys(sorted(set(backend.list_keys("")) - set(files)))  # a previous run's extra shards
    backend.put_file(marker, staging / marker, sha256_of(staging / marker))
    shutil.rmtree(staging)
