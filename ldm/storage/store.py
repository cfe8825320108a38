"""Versioned model releases in a folder or a bucket: publish, pull, list.

Layout under the store's root (a folder, or `s3://bucket/prefix`):

    <NAME>/objects/<sha256>             every file, content-addressed (shared by releases)
    <NAME>/releases/<NNNNNN>.json       release N's manifest, written once, after its objects
    <NAME>/aliases/<ALIAS>.json         {"version": N}, moved by later publishes

A release exists once its manifest does, and the manifest is written last in a
single create-only write: an interrupted publish leaves only unreferenced
objects, never a visible partial release. The same files publish to the same
release (same content hash, no new version). A pull verifies every sha256 in a
temporary folder beside the destination and renames it into place only whole.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ldm.storage.backend import Backend, NotFound
from ldm.storage.manifest import (MANIFEST, StoreError, build_manifest, check_name, collect_bundle, content_hash,
                                  describe_files, read_files, sha256_file)

log = logging.getLogger(__name__)


class ReleaseNotFound(StoreError):
    """No release (or alias) of that name and version in the store."""


class ChecksumError(StoreError):
    """A pulled file's sha256 or size differs from the release manifest."""


@dataclass(frozen=True)
class Release:
    """One published release of a name."""

    name: str
    version: int
    created: str
    content_sha256: str
    aliases: tuple[str, ...]
    files: int
    size: int
    manifest: dict[str, Any] = field(repr=False)


class ReleaseStore:
    """publish / pull / releases over a Backend (LocalBackend or S3Backend)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.url = backend.url

    # ------------------------------------------------------------------ reading

    def _versions(self, name: str) -> list[int]:
        """The release numbers of `name` whose manifest is complete (written in one piece)."""
        stems = (key.rsplit("/", 1)[-1] for key in self.backend.list_keys(f"{name}/releases/"))
        return sorted(int(stem[:-5]) for stem in stems if stem.endswith(".json") and stem[:-5].isdigit())

    def _manifest(self, name: str, version: int) -> dict[str, Any]:
        return json.loads(self.backend.get_bytes(f"{name}/releases/{version:06d}.json"))

    def aliases(self, name: str) -> dict[str, int]:
        """alias -> version for `name`."""
        pointers = {}
        for key in self.backend.list_keys(f"{name}/aliases/"):
            if key.endswith(".json"):
                pointers[key.rsplit("/", 1)[-1].removesuffix(".json")] = int(json.loads(self.backend.get_bytes(key))["version"])
        return pointers

    def _release(self, name: str, version: int, pointers: Mapping[str, int]) -> Release:
        doc = self._manifest(name, version)
        return Release(name, version, doc["created"], doc["content_sha256"],
                       tuple(sorted(a for a, v in pointers.items() if v == version)),
                       len(doc["files"]), sum(row["size"] for row in doc["files"]), doc)

    def releases(self, name: str) -> list[Release]:
        """Every release of `name`, oldest first, with its aliases."""
        check_name("release name", name)
        pointers = self.aliases(name)
        return [self._release(name, version, pointers) for version in self._versions(name)]

    def resolve(self, name: str, version: int | None = None, alias: str | None = None) -> Release:
        """The release a version, an alias or (neither) the latest version names."""
        check_name("release name", name)
        if version is not None and alias is not None:
            raise StoreError("give a version or an alias, not both")
        versions = self._versions(name)
        if not versions:
            raise ReleaseNotFound(f"no releases of {name!r} in {self.url}; publish one with `ldm publish DIR --name {name}`")
        pointers = self.aliases(name)
        if alias is not None:
            if alias not in pointers:
                listed = ", ".join(sorted(pointers)) or "none"
                raise ReleaseNotFound(f"{name!r} has no alias {alias!r} in {self.url} (aliases: {listed})")
            version = pointers[alias]
        if version is None:
            version = versions[-1]
        if version not in versions:
            raise ReleaseNotFound(f"{name!r} has no version {version} in {self.url} (versions: {', '.join(map(str, versions))})")
        return self._release(name, version, pointers)

    # --------------------------------------------------------------- publishing

    def publish(self, bundle_dir: Path | Mapping[str, Path], name: str, alias: str | None = None, *,
                params: Mapping[str, Any] | None = None, metrics: Mapping[str, float] | None = None,
                git_revision: str | None = None) -> tuple[Release, bool]:
        """Upload a bundle as the next release of `name`; (release, False) if the same files were already released."""
        check_name("release name", name)
        if alias is not None:
            check_name("alias", alias)
        bundle = collect_bundle(bundle_dir)
        files = describe_files(bundle)
        digest = content_hash(files)
        existing = self._released_as(name, digest)
        if existing is not None:
            log.info("%s: these files are release %d already (content %s); nothing uploaded", name, existing, digest[:12])
            return self._point(name, alias, existing), False
        versioning = getattr(self.backend, "versioning", None)
        if versioning is not None and versioning() not in (None, "Enabled"):
            log.warning("%s has bucket versioning off: an overwritten alias or a deleted object cannot be recovered; "
                        "turn it on with `ldm store init`", self.url)
        for entry in files:
            key = f"{name}/objects/{entry.sha256}"
            if not self.backend.has_object(key, entry.size):
                log.info("uploading %s (%d bytes)", entry.path, entry.size)
                self.backend.put_file(key, bundle[entry.path], entry.sha256)
        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        for _ in range(20):  # a concurrent publisher may take a number first: take the next one
            same = self._released_as(name, digest)
            if same is not None:
                return self._point(name, alias, same), False
            version = max(self._versions(name), default=0) + 1
            doc = build_manifest(name, files, bundle, version=version, created=created, params=params, metrics=metrics,
                                 git_revision=git_revision)
            if self.backend.put_bytes_once(f"{name}/releases/{version:06d}.json", _encode(doc)):
                log.info("%s: published release %d (content %s) to %s", name, version, digest[:12], self.url)
                return self._point(name, alias, version), True
        raise StoreError(f"{name}: could not take a release number in {self.url}: too many concurrent publishers")

    def _released_as(self, name: str, digest: str) -> int | None:
        """The version already holding exactly these files, if any."""
        return next((v for v in self._versions(name) if self._manifest(name, v)["content_sha256"] == digest), None)

    def _point(self, name: str, alias: str | None, version: int) -> Release:
        """Move `alias` (if any) to `version`; the release as it now stands."""
        if alias is not None and self.aliases(name).get(alias) != version:
            self.backend.put_bytes(f"{name}/aliases/{alias}.json", _encode({"version": version}))
            log.info("%s: alias %s -> release %d", name, alias, version)
        return self.resolve(name, version=version)

    def set_alias(self, name: str, alias: str, version: int) -> Release:
        """Point `alias` at an existing release."""
        check_name("alias", alias)
        self.resolve(name, version=version)
        return self._point(name, alias, version)

    # ------------------------------------------------------------------ pulling

    def pull(self, name: str, dest: Path, version: int | None = None, alias: str | None = None) -> Release:
        """Download exactly one release into `dest`, every sha256 verified, `dest` replaced only whole."""
        release = self.resolve(name, version, alias)
        dest = Path(dest)
        _check_destination(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        temp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.partial-"))
        try:
            for entry in read_files(release.manifest):
                target = temp.joinpath(*entry.path.split("/"))
                target.parent.mkdir(parents=True, exist_ok=True)
                log.info("downloading %s (%d bytes)", entry.path, entry.size)
                try:
                    self.backend.get_file(f"{name}/objects/{entry.sha256}", target)
                except NotFound:
                    raise StoreError(f"{entry.path} of {name} release {release.version} is missing from {self.url} "
                                     "(object deleted?); the bucket's versioning may still hold it") from None
                actual = sha256_file(target)
                if actual != entry.sha256 or target.stat().st_size != entry.size:
                    raise ChecksumError(f"{entry.path}: checksum mismatch in {name} release {release.version} "
                                        f"(sha256 {actual[:16]}..., the manifest says {entry.sha256[:16]}...); the stored copy "
                                        f"in {self.url} is damaged or was replaced; nothing was written to {dest}")
            (temp / MANIFEST).write_bytes(_encode(release.manifest))
            _swap_into_place(temp, dest)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        log.info("%s: pulled release %d (%d files) into %s", name, release.version, release.files, dest)
        return release


def _encode(doc: Mapping[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def _check_destination(dest: Path) -> None:
    """A pull writes into a new or empty folder, or replaces a previous pull (it has a manifest.json)."""
    if dest.exists() and (not dest.is_dir() or (any(dest.iterdir()) and not (dest / MANIFEST).is_file())):
        raise StoreError(f"{dest} exists and is not a pulled release; pull into a new or empty folder")


def _swap_into_place(temp: Path, dest: Path) -> None:
    """Rename the verified folder to `dest`; a previous pull there is moved aside, then removed."""
    _check_destination(dest)
    if not dest.exists():
        temp.rename(dest)
        return
    if not any(dest.iterdir()):
        dest.rmdir()
        temp.rename(dest)
        return
    old = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.old-"))
    dest.rename(old / "release")
    temp.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
