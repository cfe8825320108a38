"""What a release store needs from a place that keeps bytes: a local folder or an S3 bucket."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from ldm.storage.manifest import StoreError


class NotFound(StoreError):
    """A key that the store does not hold."""


class Backend(Protocol):
    """Keys are '/'-separated and relative to the store's root (a folder, or a bucket prefix)."""

    url: str

    def has_object(self, key: str, size: int) -> bool:
        """Whether `key` exists with `size` bytes (content-addressed keys need no more)."""

    def put_file(self, key: str, local: Path, sha256: str) -> None:
        """Upload a local file to `key`, replacing whatever is there."""

    def put_bytes(self, key: str, data: bytes) -> None:
        """Write a small object, replacing whatever is there."""

    def put_bytes_once(self, key: str, data: bytes) -> bool:
        """Write a small object only if `key` is absent; False if it exists (someone else won)."""

    def get_bytes(self, key: str) -> bytes:
        """A small object's bytes; NotFound if absent."""

    def get_file(self, key: str, local: Path) -> None:
        """Download `key` to a local file; NotFound if absent."""

    def list_keys(self, prefix: str) -> list[str]:
        """Every key under `prefix`, sorted."""


class LocalBackend:
    """A folder as a store: every write lands in a temporary file renamed into place."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.url = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*key.split("/"))

    def _staged(self, key: str) -> Path:
        """A temporary file in the key's folder, so the final rename is atomic."""
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
        os.close(handle)
        return Path(name)

    def has_object(self, key: str, size: int) -> bool:
        path = self._path(key)
        return path.is_file() and path.stat().st_size == size

    def _replace(self, key: str, write: Callable[[Path], object]) -> None:
        """`write` fills a temporary file that then replaces the key in one rename."""
        temp = self._staged(key)
        try:
            write(temp)
            temp.replace(self._path(key))
        finally:
            temp.unlink(missing_ok=True)

    def put_file(self, key: str, local: Path, sha256: str) -> None:
        self._replace(key, lambda temp: shutil.copyfile(local, temp))

    def put_bytes(self, key: str, data: bytes) -> None:
        self._replace(key, lambda temp: temp.write_bytes(data))

    def put_bytes_once(self, key: str, data: bytes) -> bool:
        temp = self._staged(key)
        try:
            temp.write_bytes(data)
            os.link(temp, self._path(key))  # fails if the key exists: a create-only write
            return True
        except FileExistsError:
            return False
        finally:
            temp.unlink(missing_ok=True)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"{key}: not in {self.url}") from None

    def get_file(self, key: str, local: Path) -> None:
        try:
            shutil.copyfile(self._path(key), local)
        except FileNotFoundError:
            raise NotFound(f"{key}: not in {self.url}") from None

    def list_keys(self, prefix: str) -> list[str]:
        folder = self._path(prefix.rstrip("/"))
        if not folder.is_dir():
            return []
        return sorted(path.relative_to(self.root).as_posix() for path in folder.rglob("*")
                      if path.is_file() and not path.name.endswith(".partial"))
