"""Model releases: publish a bundle, pull it back verified, list versions and aliases.

    store = open_store("s3://bucket/prefix", S3Settings(endpoint_url="http://localhost:9000"))
    release, new = store.publish(Path("models/ldm"), "ldm", alias="prod", git_revision="abc123")
    store.pull("ldm", Path("/srv/models/ldm"), alias="prod")

The same calls work on a local folder (`open_store("releases")`); store.py
describes the layout and why a release is all there or not there at all.
"""

from __future__ import annotations

from pathlib import Path

from ldm.storage.backend import LocalBackend, NotFound
from ldm.storage.manifest import MANIFEST, StoreError, collect_bundle, flatten_metrics
from ldm.storage.settings import S3Settings
from ldm.storage.store import ChecksumError, Release, ReleaseNotFound, ReleaseStore

__all__ = ["MANIFEST", "ChecksumError", "NotFound", "Release", "ReleaseNotFound", "ReleaseStore", "S3Settings", "StoreError",
           "collect_bundle", "flatten_metrics", "open_store"]


def open_store(url: str, settings: S3Settings = S3Settings()) -> ReleaseStore:
    """A release store for `s3://bucket/prefix`, `file:///path` or a plain folder path."""
    if url.startswith("s3://"):
        from ldm.storage.s3 import S3Backend  # boto3 only when a bucket is used

        return ReleaseStore(S3Backend(url, settings))
    if url.startswith("file://"):
        return ReleaseStore(LocalBackend(Path(url.removeprefix("file://"))))
    if "://" in url:
        raise StoreError(f"{url}: unsupported store; use s3://BUCKET[/PREFIX], file:///PATH or a folder path")
    if not url:
        raise StoreError("no release store given; pass --store, set LDM_STORE, or storage.releases in params.yaml")
    return ReleaseStore(LocalBackend(Path(url)))
