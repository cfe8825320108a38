"""Stage `download` writes each split in a seeded order global across classes, for every source.

Listed photo by photo or class folder by class folder, a shard of a 4-class split
would hold one class. In a uniformly random order the count of one class in a
shard is hypergeometric; the bounds below are chosen so that a correct shuffle
fails them for a given seed with probability about 1e-3 or less, while the
listed order fails them by far.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ldm.data.order import write_order
from ldm.data.shards import read_shards
from stages.download import Paths, run
from stages.params import parse_params

CLASSES, PER_CLASS, SHARD = ("ants", "bees", "cats", "dogs"), 40, 40
# Per shard each class expects SHARD / 4 = 10 samples. X ~ Hypergeometric(N=160, K=40, n=40):
# P(X >= 20) = 5.8e-5 and P(X = 0) = 1.3e-6, so over 4 shards x 4 classes a uniform order fails
# either bound with probability < 1e-3. The class-by-class order puts 40 of one class in a shard.
MOST = SHARD // len(CLASSES) + 9


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """4 class folders x 40 small noise PNGs (all different)."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for name in CLASSES:
        (root / name).mkdir()
        for index in range(PER_CLASS):
            Image.fromarray(rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)).save(root / name / f"{index:03d}.png")
    return root


@pytest.fixture(scope="module")
def manifest(photos, tmp_path_factory) -> Iterator[Path]:
    """The same photos as a manifest of loopback URLs."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(photos))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    lines = [{"url": f"{base}/{p.relative_to(photos).as_posix()}", "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
              "class": p.parent.name} for p in sorted(photos.rglob("*.png"))]
    path = tmp_path_factory.mktemp("manifest") / "manifest.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    yield path
    httpd.shutdown()


def _download(out: Path, source: str, path: Path | None = None, seed: int = 0, workers: int = 2, **embedded) -> dict:
    download = {"source": source, "seed": seed, "workers": workers, "embedded": embedded}
    if path is not None:
        download[source] = {"path": str(path), "val_fraction": 0.0}
    params = parse_params({"data": {"resolution": 16, "shard_size": SHARD}, "download": download})
    return run(params, Paths(out / "images", out / "report.json", out / "cache"))


def _labels_per_shard(folder: Path, split: str = "train") -> list[list[int]]:
    return [[int(raw["cls"]) for raw in read_shards([path])] for path in sorted(folder.glob(f"{split}-*.tar"))]


def _keys(folder: Path) -> list[str]:
    return [raw["__key__"] for raw in read_shards(sorted(folder.glob("train-*.tar")))]


@pytest.mark.parametrize("source", ["folder", "manifest"])
def test_every_shard_holds_the_class_mix_of_the_split(tmp_path, photos, manifest, source):
    report = _download(tmp_path, source, photos if source == "folder" else manifest)
    shards = _labels_per_shard(tmp_path / "images")
    assert report["counts"]["train"] == len(CLASSES) * PER_CLASS and len(shards) == len(CLASSES) * PER_CLASS // SHARD
    for labels in shards:
        counts = Counter(labels)
        assert set(counts) == set(range(len(CLASSES))), counts  # every class in every shard
        assert max(counts.values()) <= MOST, counts


def test_embedded_shards_mix_the_photographs(tmp_path):
    # 16 photographs x 10 crops in 4 shards of 40: the listed order gives 4 classes a shard. A uniform order
    # leaves fewer than 12 of the 16 in some shard with probability 3e-4 (simulated, 2e5 permutations).
    _download(tmp_path, "embedded", train_crops=160, val_crops=16)
    for labels in _labels_per_shard(tmp_path / "images"):
        assert len(set(labels)) >= 12, sorted(Counter(labels).items())


def test_the_order_is_the_seeds_and_not_the_workers(tmp_path, photos):
    one = _download(tmp_path / "one", "folder", photos, workers=1)
    two = _download(tmp_path / "two", "folder", photos, workers=2)
    assert one["shards"] == two["shards"]  # sha256 of every shard
    other = _download(tmp_path / "other", "folder", photos, seed=1)
    first, second = _keys(tmp_path / "one" / "images"), _keys(tmp_path / "other" / "images")
    assert sorted(first) == sorted(second) and first != second  # the same samples, in another order
    assert other["shards"] != one["shards"]


def test_write_order_depends_on_the_keys_not_their_listing():
    keys = [f"class{c}/{i}.png" for c in range(3) for i in range(50)]
    order = write_order(keys, seed=7)
    assert sorted(order) == list(range(len(keys)))
    assert [keys[i] for i in order] == [keys[::-1][i] for i in write_order(keys[::-1], seed=7)]
    assert order != write_order(keys, seed=8)
    kept = [keys[i] for i in order if keys[i] != keys[0]]
    assert [keys[1:][i] for i in write_order(keys[1:], seed=7)] == kept  # removing an input moves no other
