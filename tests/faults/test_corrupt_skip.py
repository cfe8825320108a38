"""Faults under `data.on_corrupt: skip`: every damaged shard is set aside, named in the stage's report, and the
stage goes on with the rest; under `fail` (the default) the same faults stop it (tests/faults/test_corrupt_shards.py).

The faults are made on copies of real stage outputs: an image shard cut at a member boundary, one cut inside a
member, one whose PNG bytes are garbage inside an intact tar, one its folder's shards.json does not list; a
latent shard with NaN values, and one changed after cache_latents recorded its sha256.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from ldm.data.schema import LatentSample
from ldm.data.shards import read_shards, write_shard
from ldm.data.survey import CorruptSample, Survey, check_sample, survey
from ldm.errors import InvalidInput
from ldm.latents.shards import ShardJob, usable_jobs
from ldm.latents.stats import check_shard, read_stats
from stages import cache_latents, masks
from stages.degrade import main as degrade_main
from stages.params import parse_params
from stages.train_ldm import Paths, run


@pytest.fixture(scope="module")
def images(tmp_path_factory, embedded_images) -> Path:
    """Four train shards of 4 crops and two val shards, with download's shards.json."""
    return embedded_images(tmp_path_factory.mktemp("images"), {"resolution": 32, "shard_size": 4}, 16, 8)


def _offsets(shard: Path) -> list[tuple[int, int]]:
    """(header offset, data offset) of each member."""
    with tarfile.open(shard) as tar:
        return [(info.offset, info.offset_data) for info in tar.getmembers()]


def _garbage_png(shard: Path) -> None:
    """Rewrite `shard` as an intact tar whose first PNG member holds random bytes."""
    source = tarfile.open(fileobj=io.BytesIO(shard.read_bytes()))
    done = False
    with tarfile.open(shard, "w", format=tarfile.USTAR_FORMAT) as tar:
        for info in source.getmembers():
            data = source.extractfile(info).read()
            if info.name.endswith(".png") and not done:
                data, done = np.random.default_rng(0).bytes(len(data)), True
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _damaged(images: Path, tmp_path: Path) -> Path:
    """A copy of `images`: train-000000 cut at a member boundary, train-000001 inside a member, train-000002 with a
    garbage PNG, an unlisted train-000009; train-000003 and the val shards intact."""
    folder = tmp_path / "images"
    shutil.copytree(images, folder)
    cut, mid, png = (folder / f"train-00000{i}.tar" for i in range(3))
    cut.write_bytes(cut.read_bytes()[:_offsets(cut)[len(_offsets(cut)) // 2][0]])
    mid.write_bytes(mid.read_bytes()[:_offsets(mid)[3][1] + 100])
    _garbage_png(png)
    shutil.copy(folder / "train-000003.tar", folder / "train-000009.tar")
    return folder


def test_skip_sets_each_damaged_shard_aside_with_its_reason_and_keeps_the_rest(images, tmp_path):
    folder = _damaged(images, tmp_path)
    train, val = (sorted(str(p) for p in folder.glob(f"{split}-*.tar")) for split in ("train", "val"))
    corrupt = survey(train + val, "skip")
    reasons = {Path(entry.shard).name: entry.reason for entry in corrupt.set_aside}
    assert sorted(reasons) == ["train-000000.tar", "train-000001.tar", "train-000002.tar", "train-000009.tar"]
    assert "2 samples, but" in reasons["train-000000.tar"] and "records 4" in reasons["train-000000.tar"]
    assert "cut short or damaged" in reasons["train-000001.tar"]
    assert "field 'png'" in reasons["train-000002.tar"]
    assert "not listed in" in reasons["train-000009.tar"]
    assert corrupt.keep(train) == [str(folder / "train-000003.tar")] and corrupt.keep(val) == val
    record = corrupt.to_dict()
    assert record["samples_set_aside"] == 12 and record["shards"] == 7 and record["policy"] == "skip"
    assert Survey.from_dict(json.loads(json.dumps(record))) == corrupt  # the report's entry reads back
    assert sum(1 for _ in read_shards(corrupt.keep(train))) == 4  # what a reader of the kept shards gets


def test_fail_reads_nothing_ahead_and_keep_refuses_a_split_left_empty(images, tmp_path):
    folder = _damaged(images, tmp_path)
    train = sorted(str(p) for p in folder.glob("train-*.tar"))
    assert survey(train, "fail").keep(train) == train  # the readers stop at the first damaged shard
    with pytest.raises(InvalidInput, match=r"all 4 shards .* are corrupt"):
        survey(train[:3] + train[4:], "skip").keep(train[:3] + train[4:])
    with pytest.raises(CorruptSample, match=r"sample 'k', field 'latent.npy': NaN or inf"):
        buffer = io.BytesIO()
        np.save(buffer, np.array([0.0, np.inf]))
        check_sample({"__key__": "k", "latent.npy": buffer.getvalue()}, "s.tar")


def test_degrade_under_skip_writes_the_intact_shards_and_lists_the_rest(images, tmp_path):
    folder = _damaged(images, tmp_path)
    (tmp_path / "params.yaml").write_text("data:\n  resolution: 32\n  on_corrupt: skip\ndegrade:\n  workers: 1\n")
    code = degrade_main(["--params", str(tmp_path / "params.yaml"), "--images", str(folder), "--out", str(tmp_path / "pairs"),
                         "--report", str(tmp_path / "r.json"), "--grid", str(tmp_path / "g.png")])
    report = json.loads((tmp_path / "r.json").read_text())
    assert code == 0 and sorted(p.name for p in (tmp_path / "pairs").glob("*.tar")) == [
        "train-000003.tar", "val-000000.tar", "val-000001.tar"]
    assert report["counts"] == {"train": 4, "val": 8} and report["corrupt"]["samples_set_aside"] == 12
    assert len(report["corrupt"]["set_aside"]) == 4


@pytest.mark.slow
def test_train_ldm_under_skip_sets_aside_a_nan_shard_and_a_changed_one(ldm_inputs, tmp_path, record_shards):
    inputs = tmp_path / "inputs"
    shutil.copytree(ldm_inputs, inputs, ignore=shutil.ignore_patterns("images", "pairs", "masks"))
    cache = inputs / "latents"
    nan = cache / "train-000001.tar"
    samples = [LatentSample.decode(raw) for raw in read_shards([nan])]
    samples[3].latent[0, 0, 0] = np.nan
    write_shard(nan, samples)
    record_shards(cache)  # as if cache_latents had written the NaN
    stats = read_stats(cache)
    changed = cache / "val-000000.tar"
    changed.write_bytes(changed.read_bytes() + b"\0" * 512)  # after the record: its sha256 differs
    with pytest.raises(InvalidInput, match=r"val-000000\.tar: its sha256 differs"):
        survey([str(changed)], "skip", verify=partial(check_shard, stats, str(cache))).keep([str(changed)])
    record_shards(cache)
    params = parse_params({"data": {"resolution": 64, "shard_size": 40, "on_corrupt": "skip"},
                           "train_ldm": {"steps": 4, "batch_size": 8, "val_every": 4, "checkpoint_every": 4, "threads": 1,
                                         "shuffle_buffer": 0}})
    metrics = run(params, Paths(cache, inputs / "models" / "autoencoder", tmp_path / "model", tmp_path / "ckpt",
                                tmp_path / "metrics.json", tmp_path / "loss.csv", "train_ldm"))
    assert [Path(entry["shard"]).name for entry in metrics["corrupt"]["set_aside"]] == ["train-000001.tar"]
    assert "NaN or inf" in metrics["corrupt"]["set_aside"][0]["reason"] and metrics["train"]["skipped_steps"] == 0


def test_cache_latents_drops_a_job_whose_image_or_mask_shard_is_corrupt(images, tmp_path):
    folder = _damaged(images, tmp_path)
    masks = tmp_path / "masks"
    shutil.copytree(folder, masks)  # stands in for the masks stage's folder: its own shards and shards.json
    (masks / "train-000003.tar").write_bytes(b"")  # an empty file where the mask shard should be
    jobs = [ShardJob(str(p), p.name, masks=str(masks / p.name)) for p in sorted(folder.glob("*.tar")) if p.name != "train-000009.tar"]
    kept, corrupt = usable_jobs(jobs, "skip")
    assert [job.name for job in kept] == ["val-000000.tar", "val-000001.tar"]
    assert str(masks / "train-000003.tar") in {entry.shard for entry in corrupt.set_aside}


@pytest.mark.slow
def test_masks_then_cache_latents_under_skip_leave_out_the_same_shards(images, tmp_path, save_autoencoder):
    """The chain a nightly run takes: the masks stage and the cache (which zips masks to images by shard) both set
    the damaged image shards aside; the cache holds the latents of the intact ones and lists the rest."""
    folder = _damaged(images, tmp_path)
    data = {"resolution": 32, "shard_size": 4, "on_corrupt": "skip"}
    masks.run(parse_params({"data": data, "masks": {"workers": 1, "grid_images": 2}}),
              masks.Paths(folder, tmp_path / "masks", tmp_path / "masks.json", tmp_path / "masks.png"))
    save_autoencoder(tmp_path / "ae", "kl-f4-tiny")
    cache_latents.run(parse_params({"data": data, "cache_latents": {"accelerator": "cpu", "devices": 1, "threads": 1,
                                                                      "pairs": False, "label_maps": False}}),
                      cache_latents.Paths(folder, None, tmp_path / "ae", tmp_path / "latents", tmp_path / "cache.json",
                                          tmp_path / "masks"))
    report = json.loads((tmp_path / "cache.json").read_text())
    assert sorted(p.name for p in (tmp_path / "latents").glob("*.tar")) == ["train-000003.tar", "val-000000.tar",
                                                                             "val-000001.tar"]
    assert len(report["corrupt"]["set_aside"]) == 4 and report["corrupt"]["samples_set_aside"] == 12
    assert json.loads((tmp_path / "masks.json").read_text())["corrupt"]["samples_set_aside"] == 12
