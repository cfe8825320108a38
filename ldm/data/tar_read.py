"""Reading shard tars defensively: every stage's samples come through `checked_tar_samples`.

A shard that `ldm.data.shards.write_shard` wrote holds regular files named
`<key>.<field>` and nothing else. Reading one, this module refuses

- a member that is a link, a device or a folder, or whose name is absolute or has a `..` part
  (a crafted tar: nothing is extracted to disk here, but such a shard was not written by this pipeline);
- a tar cut short inside a member, or not a tar at all (a damaged copy);
- a shard whose number of samples differs from its folder's `shards.json` (`ldm.data.shards.MANIFEST`),
  where the folder has one: a tar cut at a member boundary is a valid, shorter tar, and only the
  count the producing stage recorded tells it apart.

Each refusal is a `CorruptShard` (a user error: one line naming the shard and the fix). The samples
are grouped by key with webdataset's own `group_by_keys`, as `wds.tarfile_to_samples` does.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import PurePosixPath
from typing import Any

import webdataset as wds
from webdataset.tariterators import base_plus_ext, group_by_keys, url_opener

from ldm.data.location import Location, join, name_of, parent_of
from ldm.data.remote import read_bytes
from ldm.errors import InputNotFound, InvalidInput

# In a shard folder of download, degrade, masks or label_maps, written last (ldm.data.shards.ShardManifest).
MANIFEST = "shards.json"


class CorruptShard(InvalidInput):
    """A shard that is damaged, cut short or not one this pipeline wrote; the message names it."""


def _fix(url: str) -> str:
    return f"re-run the stage that writes {parent_of(url)} (`dvc repro --force <stage>`), or restore the shard"


def _manifest_counts(folder: Location) -> dict[str, int] | None:
    """The per-shard sample counts of a folder's shards.json, read anew for each shard (a stage may replace the
    folder within one process); None when the folder has none."""
    try:
        data = read_bytes(join(folder, MANIFEST))
    except InputNotFound:
        return None
    return {name: int(count) for name, count in json.loads(data).get("samples", {}).items()}


def expected_samples(url: str) -> int | None:
    """The samples the producing stage recorded for this shard, or None where its folder has no shards.json."""
    counts = _manifest_counts(parent_of(url))
    if counts is None:
        return None
    name = name_of(url)
    if name not in counts:
        raise CorruptShard(f"{url}: not listed in {join(parent_of(url), MANIFEST)}; {_fix(url)}")
    return counts[name]


def check_member(info: tarfile.TarInfo, url: str) -> None:
    """Refuse a member that no shard of this pipeline holds: anything but a regular file, or an unsafe name."""
    path = PurePosixPath(info.name)
    if not info.isreg():
        kind = "link" if info.issym() or info.islnk() else "directory" if info.isdir() else "special file"
        raise CorruptShard(f"{url}: member {info.name!r} is a {kind}; a shard holds regular files only. {_fix(url)}")
    if path.is_absolute() or ".." in path.parts:
        raise CorruptShard(f"{url}: member {info.name!r} has an absolute or `..` path; a shard's members are"
                           f" `<key>.<field>`. {_fix(url)}")


def _members(stream: Any, url: str) -> Iterator[dict[str, Any]]:
    """The checked files of one tar stream: {"fname", "data", "__url__"}; CorruptShard if it is cut or not a tar."""
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            for info in tar:
                check_member(info, url)
                handle = tar.extractfile(info)
                assert handle is not None  # a regular file
                yield {"fname": info.name, "data": handle.read(), "__url__": url}
                tar.members = []  # a stream of any length: keep no headers
    except (tarfile.TarError, EOFError) as exc:
        raise CorruptShard(f"{url}: unreadable tar ({exc}); it is cut short or damaged. {_fix(url)}") from None


def tar_files(streams: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """webdataset's opened shards -> their checked files, an empty dict after each shard (`group_by_keys`' marker)."""
    for source in streams:
        url = str(source["url"])
        keys: set[str] = set()
        for member in _members(source["stream"], url):
            keys.add(base_plus_ext(member["fname"])[0])
            yield member
        expected = expected_samples(url)
        if expected is not None and len(keys) != expected:
            raise CorruptShard(f"{url}: {len(keys)} samples, but {join(parent_of(url), MANIFEST)} records {expected};"
                               f" the shard is truncated or was replaced. {_fix(url)}")
        yield {}


def _tar_samples(src: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Shard URLs ({"url"}) -> raw samples ({"__key__", "__url__", fields}), every shard checked."""
    return group_by_keys(tar_files(url_opener(src)))


checked_tar_samples = wds.filters.pipelinefilter(_tar_samples)
"""The pipeline stage that stands where `wds.tarfile_to_samples()` would (it raises instead of skipping)."""
