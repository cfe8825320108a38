"""The shard schema: one owner of every field name, typed samples that round-trip, keys unique across splits."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds

from ldm.data.schema import KEY, Field, ImageSample, LatentSample, PairSample
from ldm.data.shards import read_shards, write_shard, write_split
from ldm.latents.stats import DatasetMoments, EstimateGap, FirstBatch, LatentStats
from stages import download
from stages.params import parse_params

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "ldm" / "data" / "schema.py"
FIELD_NAMES = {field.value for field in Field} | {KEY}


def _literals(path: Path) -> list[tuple[int, str]]:
    """String constants of a file that equal a field name; keyword values such as `mode="json"` are not fields."""
    tree = ast.parse(path.read_text(), filename=str(path))
    keyword_values = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.keyword)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and node.value in FIELD_NAMES and id(node) not in keyword_values]


def test_field_names_are_written_only_in_the_schema_module():
    found = {str(path.relative_to(ROOT)): _literals(path)
             for layer in ("ldm", "stages", "flows", "bench") for path in sorted((ROOT / layer).rglob("*.py"))
             if path != SCHEMA}
    assert {path: hits for path, hits in found.items() if hits} == {}
    assert {value for _, value in _literals(SCHEMA)} == FIELD_NAMES  # the check would see them


def _image(h: int = 16, w: int = 24, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_typed_samples_round_trip_through_a_shard(tmp_path):
    image = ImageSample("cat_train_00001", _image(), 3, "a photo of a cat", {"source": "x"})
    pair = PairSample("cat_train_00001_d0", _image(seed=1), _image(4, 6, seed=2), 3, "a photo of a cat", {"degradation": {}})
    latent = LatentSample("cat_train_00001", np.arange(24, dtype=np.float16).reshape(2, 3, 4), 3, "a cat", {}, _image(4, 6))
    for sample, kind in ((image, ImageSample), (pair, PairSample), (latent, LatentSample)):
        info = write_shard(tmp_path / f"{kind.__name__}.tar", [sample])
        [back] = [kind.decode(raw) for raw in read_shards([tmp_path / info.name])]
        for name, value in vars(sample).items():
            other = getattr(back, name)
            assert np.array_equal(value, other) if isinstance(value, np.ndarray) else value == other, (kind, name)
    # the shards are plain webdataset: the fields decode with webdataset's own decoders
    [raw] = list(wds.WebDataset(str(tmp_path / "ImageSample.tar"), shardshuffle=False).decode("rgb8"))
    assert raw[Field.IMAGE].shape == (16, 24, 3) and raw[Field.META] == {"source": "x"}


def test_the_writer_is_deterministic_and_leaves_no_partial_file(tmp_path):
    samples = [ImageSample(f"k{i}", _image(seed=i), i, "c") for i in range(5)]
    one = write_split(samples, tmp_path / "a", "train", 2)
    two = write_split(samples, tmp_path / "b", "train", 2)
    assert [i.sha256 for i in one] == [i.sha256 for i in two] and [i.samples for i in one] == [2, 2, 1]
    assert not list(tmp_path.rglob(".*partial*"))


def test_a_missing_field_is_named(tmp_path):
    write_shard(tmp_path / "s.tar", [ImageSample("k", _image(), 0, "c")])
    raw = next(read_shards([tmp_path / "s.tar"]))
    with pytest.raises(KeyError, match="hr.png"):
        PairSample.decode(raw)


def test_latent_stats_round_trip_strictly():
    stats = LatentStats(kind="kl", counts={"train": 4}, first_batch=FirstBatch(2.0, 4, 0.5),
                        dataset=DatasetMoments(0.1, 2.5, (0.1,), (2.5,), 64, 0, 4, 0.4), first_batch_vs_dataset=EstimateGap(0.8, 0.2),
                        scale_rule="dataset", scale_factor=0.4, scaled_std=1.0)
    assert LatentStats.from_dict(json.loads(json.dumps(stats.to_dict()))) == stats
    with pytest.raises(ValueError, match="scale_rule"):
        LatentStats.from_dict({**stats.to_dict(), "scale_rule": "median"})
    with pytest.raises(ValueError, match="unknown key"):
        LatentStats.from_dict({**stats.to_dict(), "scale": 1.0})


def test_embedded_keys_are_unique_across_splits_and_name_their_split(tmp_path):
    params = parse_params({"data": {"resolution": 32, "shard_size": 50},
                           "download": {"embedded": {"train_crops": 64, "val_crops": 32}}})
    download.run(params, download.Paths(tmp_path / "images", tmp_path / "report.json", tmp_path / "cache"))
    keys = {split: [raw[KEY] for raw in read_shards(sorted((tmp_path / "images").glob(f"{split}-*.tar")))]
            for split in ("train", "val")}
    assert len(keys["train"]) == 64 and len(keys["val"]) == 32
    every = keys["train"] + keys["val"]
    assert len(set(every)) == len(every)
    for split, names in keys.items():
        assert all(f"_{split}_" in key for key in names), (split, names[:3])


def test_latent_sample_carries_the_inpainting_extras(tmp_path):
    mask = np.zeros((4, 6), np.uint8)
    mask[1:3, 2:5] = 1
    masked = np.arange(72, dtype=np.float16).reshape(3, 4, 6)
    sample = LatentSample("k", masked * 2, 1, "c", {}, masked=masked, mask=mask)
    raw = sample.encode()
    assert {Field.MASKED.value, Field.MASK.value} <= set(raw)
    write_shard(tmp_path / "s.tar", [sample])
    back = LatentSample.decode(next(read_shards([tmp_path / "s.tar"])))
    assert np.array_equal(back.masked, masked) and back.masked.dtype == np.float16
    assert np.array_equal(back.mask, mask) and back.mask.dtype == np.uint8
    plain = LatentSample.decode(LatentSample("k", masked, 1, "c").encode())
    assert plain.masked is None and plain.mask is None
    with pytest.raises(ValueError, match="masked and mask go together"):
        LatentSample("k", masked, 1, "c", masked=masked)
