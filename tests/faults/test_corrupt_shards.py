"""Faults: shards cut short, filled with garbage or crafted, read by the library and by a stage.

Each fault is made on a copy of a real `download` output (image shards and their shards.json):
the file is truncated at a member boundary or inside a member, overwritten with random bytes, or
rebuilt with a link, an absolute or a `..` member. Every reader refuses it with a `CorruptShard`
naming the shard; the degrade stage exits 2 with that one line and publishes no pairs folder.
"""

from __future__ import annotations

import io
import re
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from ldm.data.loader import image_loader
from ldm.data.loader_config import LoaderSettings
from ldm.data.shards import read_shards
from ldm.data.tar_read import CorruptShard
from stages.degrade import main as degrade_main


@pytest.fixture(scope="module")
def images(tmp_path_factory, embedded_images) -> Path:
    """Two train shards of 8 crops and one val shard, with download's shards.json."""
    return embedded_images(tmp_path_factory.mktemp("images"), {"resolution": 32, "shard_size": 8}, 16, 8)


def _copy(images: Path, tmp_path: Path) -> tuple[Path, Path]:
    folder = tmp_path / "images"
    shutil.copytree(images, folder)
    return folder, folder / "train-000000.tar"


def _member_offsets(shard: Path) -> list[tuple[int, int]]:
    """(header offset, data offset) of each member."""
    with tarfile.open(shard) as tar:
        return [(info.offset, info.offset_data) for info in tar.getmembers()]


def _read_all(folder: Path) -> int:
    return sum(1 for _ in read_shards(sorted(folder.glob("*.tar"))))


def test_an_intact_folder_reads_whole(images):
    assert _read_all(images) == 24


def test_a_shard_cut_at_a_member_boundary_is_caught_by_its_count(images, tmp_path):
    folder, shard = _copy(images, tmp_path)
    offsets = _member_offsets(shard)
    fields = len(offsets) // 8  # members per sample
    cut = offsets[5 * fields][0]  # the header of sample 6: five whole samples remain, a valid shorter tar
    shard.write_bytes(shard.read_bytes()[:cut])
    with tarfile.open(shard) as tar:  # the standard library reads it without complaint
        assert len(tar.getmembers()) == 5 * fields
    with pytest.raises(CorruptShard, match=r"train-000000\.tar: 5 samples, but .*shards\.json records 8"):
        _read_all(folder)


def test_a_shard_cut_inside_a_member_is_refused(images, tmp_path):
    folder, shard = _copy(images, tmp_path)
    header, data = _member_offsets(shard)[3]
    shard.write_bytes(shard.read_bytes()[:data + 100])
    with pytest.raises(CorruptShard, match=r"train-000000\.tar: unreadable tar .*cut short or damaged"):
        _read_all(folder)


def test_garbage_in_place_of_a_shard_is_refused(images, tmp_path):
    folder, shard = _copy(images, tmp_path)
    shard.write_bytes(np.random.default_rng(0).bytes(shard.stat().st_size))
    with pytest.raises(CorruptShard, match=r"train-000000\.tar: unreadable tar"):
        _read_all(folder)


def test_a_shard_missing_from_the_manifest_is_refused(images, tmp_path):
    folder, shard = _copy(images, tmp_path)
    shutil.copy(shard, folder / "train-000009.tar")
    with pytest.raises(CorruptShard, match=r"train-000009\.tar: not listed in .*shards\.json"):
        _read_all(folder)


def _crafted(shard: Path, member: tarfile.TarInfo, data: bytes = b"") -> None:
    """Rewrite `shard` with its own members and then `member`."""
    source = tarfile.open(fileobj=io.BytesIO(shard.read_bytes()))
    with tarfile.open(shard, "w") as tar:
        for info in source.getmembers():
            tar.addfile(info, source.extractfile(info))
        tar.addfile(member, io.BytesIO(data) if member.isreg() else None)


@pytest.mark.parametrize("name, kind, what", [
    ("/etc/passwd.png", tarfile.REGTYPE, "has an absolute or `..` path"),
    ("../../outside.png", tarfile.REGTYPE, "has an absolute or `..` path"),
    ("evil.png", tarfile.SYMTYPE, "is a link"),
    ("hard.png", tarfile.LNKTYPE, "is a link"),
    ("folder", tarfile.DIRTYPE, "is a directory"),
])
def test_a_crafted_member_is_refused(images, tmp_path, name, kind, what):
    folder, shard = _copy(images, tmp_path)
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = "/etc/passwd" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
    info.size = 4 if kind == tarfile.REGTYPE else 0
    _crafted(shard, info, b"data")
    with pytest.raises(CorruptShard, match=re.escape(f"train-000000.tar: member '{name}' {what}")):
        _read_all(folder)


def test_the_training_loader_refuses_a_cut_shard_in_its_workers(images, tmp_path):
    folder, shard = _copy(images, tmp_path)
    shard.write_bytes(shard.read_bytes()[:_member_offsets(shard)[8][0]])
    loader = image_loader(sorted(str(p) for p in folder.glob("train-*.tar")), batch_size=4,
                          settings=LoaderSettings(num_workers=1))
    with pytest.raises(CorruptShard, match=r"train-000000\.tar: \d+ samples, but"):
        list(loader)


def test_the_degrade_stage_exits_2_naming_the_shard_and_publishes_nothing(images, tmp_path, capsys):
    folder, shard = _copy(images, tmp_path)
    shard.write_bytes(shard.read_bytes()[:_member_offsets(shard)[8][0]])
    (tmp_path / "params.yaml").write_text("data:\n  resolution: 32\ndegrade:\n  workers: 1\n")
    code = degrade_main(["--params", str(tmp_path / "params.yaml"), "--images", str(folder), "--out", str(tmp_path / "pairs"),
                         "--report", str(tmp_path / "r.json"), "--grid", str(tmp_path / "g.png")])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]  # beside the progress bar
    assert code == 2 and len(err) == 1 and re.search(r"train-000000\.tar: \d samples, but", err[0]), err
    assert not (tmp_path / "pairs").exists() and not (tmp_path / "r.json").exists()
