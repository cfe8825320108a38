"""A release's manifest: every file with its sha256 and size, plus what made it.

Notation: a *bundle* maps release-relative paths (`model.safetensors`,
`metrics/evaluate.json`) to local files. Its *content hash* is the sha256 of the
canonical JSON of the sorted (path, sha256, size) list, so the same files give
the same hash whatever the time, the host or the order they were found in.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ldm.errors import UserError

MANIFEST = "manifest.json"  # the file a pull writes beside the release's files
FORMAT = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class StoreError(UserError, RuntimeError):
    """A store operation failed; the message says what was wrong and what to do."""


@dataclass(frozen=True)
class FileEntry:
    """One file of a release."""

    path: str     # release-relative, POSIX separators
    sha256: str
    size: int


def check_name(kind: str, value: str) -> str:
    """A release name or alias: letters, digits, '.', '_', '-' (it becomes part of a key)."""
    if not _NAME.match(value):
        raise StoreError(f"{kind} {value!r} is not allowed: use letters, digits, '.', '_' and '-' (at most 128, not starting with a symbol)")
    return value


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def collect_bundle(source: Path | Mapping[str, Path]) -> dict[str, Path]:
    """Release path -> local file for a directory (its files at the release root) or a mapping.

    A mapping value that is a directory contributes its files under the key
    (`{"models/ldm": Path("models/ldm")}`); the key "" puts them at the root. A
    top-level manifest.json is left out, so a pulled release publishes back to itself.
    """
    entries = {"": Path(source)} if isinstance(source, (str, Path)) else dict(source)
    bundle: dict[str, Path] = {}
    for prefix, local in entries.items():
        local = Path(local)
        if local.is_file():
            files = {PurePosixPath(prefix or local.name): local}
        elif local.is_dir():
            files = {PurePosixPath(prefix, *path.relative_to(local).parts): path
                     for path in sorted(local.rglob("*")) if path.is_file()}
        else:
            raise StoreError(f"{local}: no such file or directory to publish")
        for relative, path in files.items():
            key = relative.as_posix()
            if key in bundle:
                raise StoreError(f"{key} would be published twice ({bundle[key]} and {path}); give the sources distinct paths")
            bundle[key] = path
    bundle.pop(MANIFEST, None)
    if not bundle:
        raise StoreError(f"{source}: nothing to publish (no files)")
    return dict(sorted(bundle.items()))


def describe_files(bundle: Mapping[str, Path]) -> list[FileEntry]:
    """sha256 and size of every file of a bundle, sorted by path."""
    return [FileEntry(path, sha256_file(local), local.stat().st_size) for path, local in sorted(bundle.items())]


def content_hash(files: list[FileEntry]) -> str:
    """The release's identity: sha256 of the canonical (path, sha256, size) list."""
    rows = sorted((entry.path, entry.sha256, entry.size) for entry in files)
    return hashlib.sha256(json.dumps(rows, separators=(",", ":")).encode()).hexdigest()


def find_lineage(bundle: Mapping[str, Path]) -> dict[str, Any]:
    """The `lineage` block of every JSON file in the bundle (configs and metrics carry one)."""
    found: dict[str, Any] = {}
    for path, local in bundle.items():
        if not path.endswith(".json") or local.stat().st_size > 16 << 20:
            continue
        try:
            data = json.loads(local.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(data, dict) and "lineage" in data:
            found[path] = data["lineage"]
    return found


def flatten_metrics(report: Any, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a JSON report as dotted keys (`counts.train`), lists and strings left out."""
    if isinstance(report, bool):
        return {}
    if isinstance(report, (int, float)):
        return {prefix: float(report)}
    if isinstance(report, dict):
        flat: dict[str, float] = {}
        for key, value in report.items():
            if key != "lineage":
                flat.update(flatten_metrics(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {}


def build_manifest(name: str, files: list[FileEntry], bundle: Mapping[str, Path], *, version: int, created: str,
                   params: Mapping[str, Any] | None, metrics: Mapping[str, float] | None, git_revision: str | None) -> dict[str, Any]:
    """The manifest document of release `version` of `name`."""
    return {
        "format": FORMAT,
        "name": name,
        "version": version,
        "created": created,
        "content_sha256": content_hash(files),
        "files": [{"path": entry.path, "sha256": entry.sha256, "size": entry.size} for entry in files],
        "git_revision": git_revision,
        "params": dict(params) if params is not None else None,
        "metrics": dict(sorted(metrics.items())) if metrics is not None else None,
        "lineage": find_lineage(bundle),
    }


def read_files(manifest: Mapping[str, Any]) -> list[FileEntry]:
    """The file list of a manifest, each path checked to stay inside the release."""
    entries = []
    for row in manifest["files"]:
        path = PurePosixPath(row["path"])
        if path.is_absolute() or ".." in path.parts or not path.parts:
            raise StoreError(f"release manifest lists an unsafe path {row['path']!r}; refusing to pull it")
        entries.append(FileEntry(path.as_posix(), row["sha256"], int(row["size"])))
    return entries
