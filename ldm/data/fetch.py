"""Manifest downloads: parallel, resumable, retried, verified by sha256.

A manifest is JSON lines: {"url": "https://... or s3://bucket/key", "sha256": "<64 hex>",
"class": "optional", "caption": "optional"}. Files land in a cache folder under
their sha256, so a second run downloads nothing, an interrupted one resumes
from its `.part` file (HTTP Range), and a checksum mismatch is always fatal.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ldm.data.folder import DataError
from ldm.data.shards import sha256_file
from ldm.errors import UserError

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ChecksumMismatch(UserError, RuntimeError):
    """A downloaded file's sha256 differs from the manifest's."""


class FetchFailed(RuntimeError):
    """A download that failed for good (after retries, or a permanent HTTP error)."""


@dataclass(frozen=True)
class Entry:
    """One manifest line."""

    url: str
    sha256: str
    class_name: str | None
    caption: str | None


def read_manifest(path: str | Path) -> list[Entry]:
    """Parse a JSON-lines manifest; every malformed line is a DataError naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such manifest; set download.manifest.path to a JSON-lines file")
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            url, digest = row["url"], row["sha256"].lower()
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise DataError(f"{path}:{number}: expected a JSON object with 'url' and 'sha256' ({exc})") from None
        if not isinstance(url, str) or not url.startswith(("http://", "https://", "s3://")):
            raise DataError(f"{path}:{number}: url must start with http://, https:// or s3://, got {url!r}")
        if not _SHA256.match(digest):
            raise DataError(f"{path}:{number}: sha256 must be 64 hex digits, got {row['sha256']!r}")
        entries.append(Entry(url, digest, row.get("class"), row.get("caption")))
    if not entries:
        raise DataError(f"{path}: the manifest lists no files")
    return entries


def _http_get(url: str, part: Path, timeout_s: float) -> None:
    """Download into `part`, resuming from its current size when the server allows."""
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        resumed = offset and response.status == 206
        with open(part, "ab" if resumed else "wb") as handle:
            while block := response.read(1 << 20):
                handle.write(block)


def _s3_get(url: str, part: Path, timeout_s: float) -> None:
    """Download an s3:// object with boto3 (endpoint and credentials from the environment)."""
    import boto3
    from botocore.config import Config

    bucket, _, key = url.removeprefix("s3://").partition("/")
    client = boto3.client("s3", config=Config(connect_timeout=timeout_s, read_timeout=timeout_s, retries={"max_attempts": 1}))
    client.download_file(bucket, key, str(part))


def _is_transient(exc: Exception) -> bool:
    """Network trouble, 5xx and 429 are worth a retry; other 4xx and bad URLs are not."""
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code >= 500 or exc.code == 429
    response = getattr(exc, "response", None)
    if isinstance(response, dict):  # botocore's ClientError carries the HTTP status
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return status >= 500 or status == 429
    from botocore.exceptions import BotoCoreError

    return isinstance(exc, (urllib.error.URLError, TimeoutError, ConnectionError, BotoCoreError))


def fetch(entry: Entry, cache: Path, *, retries: int, timeout_s: float, backoff_s: float = 0.5) -> Path:
    """The verified local copy of `entry` in `cache`, downloading it if needed."""
    target = cache / entry.sha256
    if target.exists() and sha256_file(target) == entry.sha256:
        return target
    part = target.with_suffix(".part")
    get = _s3_get if entry.url.startswith("s3://") else _http_get
    for attempt in range(retries + 1):
        try:
            get(entry.url, part, timeout_s)
            break
        except Exception as exc:  # noqa: BLE001 - classified right below
            if attempt == retries or not _is_transient(exc):
                raise FetchFailed(f"{entry.url}: {exc} (after {attempt + 1} attempt(s))") from None
            time.sleep(backoff_s * 2**attempt)
    actual = sha256_file(part)
    if actual != entry.sha256:
        part.unlink(missing_ok=True)
        raise ChecksumMismatch(f"{entry.url}: sha256 is {actual}, the manifest says {entry.sha256}")
    os.replace(part, target)
    return target


def fetch_all(entries: list[Entry], cache: str | Path, *, workers: int, retries: int, timeout_s: float,
              on_done: Callable[[], None] | None = None) -> list[Path | FetchFailed]:
    """Fetch every entry with a thread pool; results in manifest order (a FetchFailed per failure).

    A ChecksumMismatch is raised, never returned: a wrong file is never data.
    """
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)

    def one(entry: Entry) -> Path | FetchFailed:
        try:
            return fetch(entry, cache, retries=retries, timeout_s=timeout_s)
        except FetchFailed as exc:
            return exc
        finally:
            if on_done:
                on_done()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, entries))
