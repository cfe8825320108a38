"""What a stage does with a corrupt shard: stop (`fail`) or set the shard aside and say so (`skip`).

Under `fail` (params `data.on_corrupt`, the default) nothing is read ahead: the first damaged shard
stops the stage when a reader reaches it (`ldm.data.tar_read`), with one line naming it. Under
`skip`, `survey` reads every shard once before the stage starts, as a reader would (members checked,
samples counted against `shards.json`) and decodes every field of every sample (PNGs in full,
`.npy` arrays, which must be finite, class ids); a shard that fails any check is set aside whole,
and the stage's report lists it with the reason (`Survey.to_dict`). A shard is the unit a stage
reads, writes and hashes, so a bad sample costs the shard's other samples too; the report counts them.
A stage's own check of a shard (`verify`: a latent shard's sha256 against `stats.json`) runs under
both policies: it stops the stage under `fail` and sets the shard aside under `skip`.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar, get_args

import numpy as np
from PIL import Image, UnidentifiedImageError

from ldm.config import Config
from ldm.data.location import name_of, parent_of
from ldm.data.policies import OnCorrupt
from ldm.data.schema import KEY, Field, RawSample, decode_npy
from ldm.data.shards import read_shards
from ldm.data.tar_read import expected_samples
from ldm.errors import InvalidInput

log = logging.getLogger(__name__)

Shard = TypeVar("Shard", str, Path)  # a shard's URL, or a local shard's path


class CorruptSample(InvalidInput):
    """A sample whose field does not decode, or holds a NaN or inf; the message names the shard, key and field."""


@dataclass(frozen=True)
class SetAside(Config):
    """One shard a `skip` survey left out: its URL, the samples it was meant to hold and why it was left out."""

    section = "set_aside"

    shard: str
    samples: int | None  # from shards.json; None where the folder has none
    reason: str


@dataclass(frozen=True)
class Survey(Config):
    """A stage's record of its shards under `data.on_corrupt` (a report's `corrupt` entry)."""

    section = "corrupt"

    policy: OnCorrupt
    shards: int  # listed
    set_aside: list[SetAside] = field(default_factory=list)

    @property
    def samples_set_aside(self) -> int:
        return sum(entry.samples or 0 for entry in self.set_aside)

    def keep(self, urls: Sequence[Shard]) -> list[Shard]:
        """`urls` less the shards set aside; InvalidInput when that leaves none of them."""
        left = {entry.shard for entry in self.set_aside}
        kept = [url for url in urls if str(url) not in left]
        if urls and not kept:
            first = str(urls[0])
            raise InvalidInput(f"{parent_of(first)}: all {len(urls)} shards from {name_of(first)} on are corrupt, none"
                               f" is left to read (first: {self.set_aside[0].reason}); re-run the stage that writes them")
        return kept

    def __add__(self, other: Survey) -> Survey:
        """The record of both surveys' shards (one stage's inputs surveyed in two steps)."""
        return Survey(self.policy, self.shards + other.shards, [*self.set_aside, *other.set_aside])

    def to_dict(self) -> dict:
        return {**super().to_dict(), "samples_set_aside": self.samples_set_aside}

    @classmethod
    def from_dict(cls, data: dict) -> Survey:
        """A report's entry back (strict, as `Config.from_dict`)."""
        rest = {k: v for k, v in data.items() if k not in ("set_aside", "samples_set_aside")}
        return replace(super().from_dict(rest), set_aside=[SetAside.from_dict(e) for e in data.get("set_aside", [])])


def check_sample(raw: RawSample, url: str) -> None:
    """Decode every field of a raw sample as its reader would; CorruptSample naming the shard, key and field."""
    key = raw.get(KEY, "?")
    for name, data in raw.items():
        if name.startswith("__"):
            continue
        kind = name.rsplit(".", 1)[-1]  # "png", "hr.png" -> "png": a field is named by its format
        try:
            if kind == Field.IMAGE:
                with Image.open(io.BytesIO(data)) as image:
                    image.load()
            elif kind == "npy":
                if not np.isfinite(decode_npy(data)).all():
                    raise ValueError("NaN or inf values")
            elif name == Field.LABEL:
                int(data)
        except UnidentifiedImageError:
            raise CorruptSample(f"{url}: sample {key!r}, field {name!r}: not an image") from None
        except Exception as exc:  # noqa: BLE001 - whatever the decoder raises, the sample is unusable
            raise CorruptSample(f"{url}: sample {key!r}, field {name!r}: {exc}") from None


def _check_shard(url: str) -> None:
    """Read one shard in full as a stage would: InvalidInput (CorruptShard, CorruptSample) at the first fault."""
    for raw in read_shards([url]):
        check_sample(raw, url)


def survey(urls: Sequence[str | os.PathLike[str]], policy: OnCorrupt, verify: Callable[[str], None] | None = None) -> Survey:
    """The record of a stage's shards under `policy`; `Survey.keep` gives the ones it may read.

    `verify(url)`: a stage's own check of one shard (a latent shard's sha256 against stats.json), run
    under both policies. `fail`: nothing else is read (a reader raises at a damaged shard). `skip`:
    every shard is also read and decoded in full, and one that fails is set aside.
    """
    if policy not in get_args(OnCorrupt):
        raise ValueError(f"on_corrupt {policy!r}: one of {get_args(OnCorrupt)}")
    aside = []
    for url in map(str, urls):
        try:
            if verify is not None:
                verify(url)
            if policy == "skip":
                _check_shard(url)
        except InvalidInput as exc:
            if policy == "fail":
                raise
            try:
                samples = expected_samples(url)
            except InvalidInput:
                samples = None  # a shard its manifest does not list
            aside.append(SetAside(url, samples, str(exc)))
            log.warning("set aside (data.on_corrupt: skip): %s", exc)
    return Survey(policy, len(urls), aside)
