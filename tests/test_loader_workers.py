"""Training loaders give the same batches, in the same order, with 0 or 2 worker processes, and decode in the workers."""

from __future__ import annotations

import os
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import torch

from ldm.data.latents import latent_loader
from ldm.data.loader import batch_loader, image_loader, raw_samples
from ldm.data.loader_config import LoaderSettings
from ldm.data.schema import ImageSample, LatentSample
from ldm.data.shards import write_shard

SIZES = (7, 7, 5)  # 19 samples: batches of 3 cross every shard boundary; a pass drops or keeps a partial batch
BATCH, BUFFER = 3, 5


def _settings(workers: int) -> LoaderSettings:
    return LoaderSettings(num_workers=workers, prefetch_factor=2, pin_memory=False)


def _write(folder: Path, make) -> list[str]:
    """Shards train-00000{i}.tar of SIZES samples; sample n of the split gets label n."""
    folder.mkdir()
    rng, urls, n = np.random.default_rng(0), [], 0
    for index, size in enumerate(SIZES):
        path = folder / f"train-{index:06d}.tar"
        write_shard(path, [make(n + i, rng) for i in range(size)])
        urls.append(str(path))
        n += size
    return urls


@pytest.fixture(scope="module")
def image_urls(tmp_path_factory) -> list[str]:
    def make(n: int, rng: np.random.Generator) -> ImageSample:  # 16 x 24: non-square
        return ImageSample(key=f"s{n:03d}", image=rng.integers(0, 256, (16, 24, 3), dtype=np.uint8), label=n, caption=f"c{n}")

    return _write(tmp_path_factory.mktemp("images") / "shards", make)


@pytest.fixture(scope="module")
def latent_urls(tmp_path_factory) -> list[str]:
    def make(n: int, rng: np.random.Generator) -> LatentSample:  # an SR pair: latent [4 x 4 x 6] f16 and LR [8 x 12 x 3]
        return LatentSample(key=f"s{n:03d}", latent=rng.standard_normal((4, 4, 6)).astype(np.float16), label=n,
                            caption=f"c{n}", lr=rng.integers(0, 256, (8, 12, 3), dtype=np.uint8))

    return _write(tmp_path_factory.mktemp("latents") / "shards", make)


def _batches(loader, count: int | None) -> list:
    return list(islice(loader, count)) if count else list(loader)


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _labels(batches: list) -> list[int]:
    return [int(v) for batch in batches for v in (batch["label"] if isinstance(batch, dict) else batch[1])]


@pytest.mark.parametrize("endless", [True, False])
def test_image_batches_do_not_depend_on_workers(image_urls, endless):
    count = 14 if endless else None  # endless: 6 full batches a pass, so 14 span three passes
    loaders = [image_loader(image_urls, batch_size=BATCH, settings=_settings(w), shuffle=BUFFER, seed=3, endless=endless)
               for w in (0, 2)]
    runs = [_batches(loader, count) for loader in loaders]
    assert _same(runs[0], runs[1])
    assert all(_same(_batches(loader, count), runs[0]) for loader in loaders)  # a second iter() starts over
    labels = _labels(runs[0])
    assert runs[0][0][0].shape == (BATCH, 3, 16, 24)
    if endless:  # a pass is 6 full batches of its 19 samples; the partial seventh is dropped
        assert len(runs[0]) == 14 and len(set(labels[:18])) == 18
    else:
        assert len(runs[0]) == 7 and sorted(labels) == list(range(19)) and len(runs[0][-1][1]) == 1
    assert labels != sorted(labels)  # shuffled: a test with the shuffle off could not see an order change
    other = _batches(image_loader(image_urls, batch_size=BATCH, settings=_settings(0), shuffle=BUFFER, seed=4,
                                  endless=endless), count)
    assert _labels(other) != labels


def test_latent_pair_batches_do_not_depend_on_workers(latent_urls):
    runs = [_batches(latent_loader(latent_urls, scale_factor=0.5, batch_size=BATCH, settings=_settings(w), shuffle=BUFFER,
                                   seed=3, endless=True), 10) for w in (0, 2)]
    assert _same(runs[0], runs[1])
    first = runs[0][0]
    assert first["z"].shape == (BATCH, 4, 4, 6) and first["z"].dtype == torch.float32
    assert first["lr"].shape == (BATCH, 3, 8, 12) and len(first["caption"]) == BATCH
    assert _labels(runs[0]) != sorted(_labels(runs[0]))


def _decoded_by(raw: dict) -> int:
    return os.getpid()


def test_workers_decode_and_take_turns(image_urls):
    raw = raw_samples(image_urls, split_by_worker=False)
    pids = [batch.tolist() for batch in batch_loader(raw, _decoded_by, batch_size=BATCH, settings=_settings(2))]
    assert len(pids) == 7 and all(len(set(batch)) == 1 for batch in pids)  # one worker decodes a whole batch
    workers = [batch[0] for batch in pids]
    assert os.getpid() not in workers and len(set(workers)) == 2
    assert workers[0::2] == [workers[0]] * 4 and workers[1::2] == [workers[1]] * 3  # batch k from worker k % 2
    with pytest.raises(ValueError, match="split_by_worker=False"):
        batch_loader(raw_samples(image_urls), _decoded_by, batch_size=BATCH, settings=_settings(2))
