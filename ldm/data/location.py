"""Where a shard folder lives: a local path or an s3://bucket/prefix URL (no I/O, no heavy imports).

Command lines parse a `Location` with `location`; `ldm.data.remote` reads and
writes the URLs.
"""

from __future__ import annotations

from pathlib import Path

Location = Path | str  # a local folder or file, or an s3://bucket/prefix URL
SCHEME = "s3://"


def is_url(location: Location) -> bool:
    """Whether `location` names an object or prefix in a bucket."""
    return isinstance(location, str) and location.startswith(SCHEME)


def location(text: str) -> Location:
    """A command-line value: an s3://bucket/prefix URL stays a string, anything else is a local Path."""
    if text.startswith(SCHEME):
        from ldm.storage.s3 import split_url  # boto3 only when a bucket is named

        split_url(text)  # a bucket name and no credentials, or one line saying so
        return text.rstrip("/")
    if "://" in text:
        from ldm.errors import InvalidInput

        raise InvalidInput(f"{text}: only s3://bucket/prefix URLs or local paths are allowed")
    return Path(text)


def join(folder: Location, *names: str) -> Location:
    """`folder / name / ...`, for a path or a URL."""
    return "/".join([str(folder), *names]) if is_url(folder) else Path(folder, *names)


def name_of(location: Location) -> str:
    """The last part of a path or URL: a shard's file name."""
    return str(location).rstrip("/").rsplit("/", 1)[-1]


def parent_of(location: Location) -> Location:
    """The folder that holds a file or object: a shard's folder."""
    if is_url(location):
        return str(location).rstrip("/").rsplit("/", 1)[0]
    return Path(location).parent


def absolute(location: Location) -> str:
    """A URL as it is, a path made absolute: what a task on another process (or machine) can open."""
    return str(location) if is_url(location) else str(Path(location).resolve())
