"""Stage `cache_latents`: latent shards, both scale estimates, determinism, devices, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
import yaml

from ldm.autoencoder import build_autoencoder
from ldm.data.latents import collate, latent_dataset
from ldm.latents import RunningMoments, choose_scale_factor, encode_latents, first_batch_std
from stages import degrade, download
from stages.cache_latents import Paths, run
from stages.params import parse_params

DATA = {"resolution": 32, "shard_size": 20}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, save_autoencoder) -> Path:
    """Image shards, pair shards and two untrained autoencoders (KL and VQ) in one folder."""
    out = tmp_path_factory.mktemp("cache-inputs")
    params = parse_params({"data": DATA, "download": {"embedded": {"train_crops": 50, "val_crops": 12}}})
    download.run(params, download.Paths(out / "images", out / "download.json", out / "cache"))
    degrade.run(parse_params({"data": DATA, "degrade": {"workers": 1, "grid_pairs": 2}}),
                degrade.Paths(out / "images", out / "pairs", out / "degrade.json", out / "degrade.png"))
    save_autoencoder(out / "kl", "kl-f4-tiny")
    save_autoencoder(out / "vq", "vq-f4-tiny")
    return out


def _run(inputs: Path, out: Path, model: str = "kl", cluster: dict | None = None, **cache) -> dict:
    params = parse_params({"data": DATA, "cluster": cluster or {},
                           "cache_latents": {"batch_size": 16, "accelerator": "cpu", "devices": 1, "label_maps": False, **cache}})
    return run(params, Paths(inputs / "images", inputs / "pairs", inputs / model, out / "latents", out / "report.json"))


def _tar_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.tar"))}


def test_cache_holds_latents_pairs_and_both_estimates(inputs, tmp_path):
    stats = _run(inputs, tmp_path)
    assert stats["counts"] == {"train": 50, "val": 12, "pairs_train": 50, "pairs_val": 12}
    assert stats["first_batch"]["samples"] == 16
    assert stats["dataset"]["samples"] == 50 and len(stats["dataset"]["channel_std"]) == 3
    assert stats["scale_factor"] == pytest.approx(1 / stats["dataset"]["std"])
    assert abs(stats["scaled_std"] - 1.0) <= 0.02
    on_disk = json.loads((tmp_path / "latents" / "stats.json").read_text())
    assert on_disk["scale_factor"] == stats["scale_factor"] and on_disk["autoencoder_sha256"]
    sample = next(iter(wds.WebDataset(str(tmp_path / "latents" / "pairs" / "train-000000.tar"), shardshuffle=False).decode("rgb8")))
    assert sample["latent.npy"].dtype == np.float16 and sample["latent.npy"].shape == (3, 8, 8)
    assert sample["lr.png"].shape == (8, 8, 3) and sample["txt"] and int(sample["cls"]) >= 0
    assert json.loads((tmp_path / "report.json").read_text())["scale_factor"] == stats["scale_factor"]


def test_scaled_latents_have_unit_std_when_read_back(inputs, tmp_path):
    stats = _run(inputs, tmp_path, dtype="float32")
    urls = sorted(str(p) for p in (tmp_path / "latents").glob("train-*.tar"))
    z = torch.stack([s["z"] for s in latent_dataset(urls, scale_factor=stats["scale_factor"])])
    assert z.shape == (50, 3, 8, 8)
    assert float(z.double().std(unbiased=False)) == pytest.approx(1.0, abs=1e-4)


def test_two_runs_are_byte_identical(inputs, tmp_path):
    _run(inputs, tmp_path / "one", posterior="sample")
    _run(inputs, tmp_path / "two", posterior="sample")
    assert _tar_bytes(tmp_path / "one" / "latents") == _tar_bytes(tmp_path / "two" / "latents")
    one = json.loads((tmp_path / "one" / "latents" / "stats.json").read_text())
    two = json.loads((tmp_path / "two" / "latents" / "stats.json").read_text())
    one["lineage"].pop("code_version"), two["lineage"].pop("code_version")
    assert one == two


@pytest.mark.slow
def test_the_task_pool_writes_lightnings_bytes_for_any_worker_count(inputs, tmp_path):
    """On the CPU, workers > 1 or a Dask cluster encode shard by shard as tasks: the same shards and stats.json."""
    distributed = pytest.importorskip("distributed")
    _run(inputs, tmp_path / "lightning", posterior="sample", threads=1)
    _run(inputs, tmp_path / "two", posterior="sample", threads=1, workers=2)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        _run(inputs, tmp_path / "dask", posterior="sample", threads=1, cluster={"address": cluster.scheduler_address})
    reports = {run: json.loads((tmp_path / run / "report.json").read_text())["tasks"] for run in ("lightning", "two", "dask")}
    assert reports["lightning"]["where"] == "lightning cpu" and reports["two"]["where"] == "local"
    assert reports["dask"]["where"] == f"dask {cluster.scheduler_address}" and reports["dask"]["workers"] == 2
    assert {r["total"] for r in reports.values()} == {len(_tar_bytes(tmp_path / "lightning" / "latents"))}
    for run in ("two", "dask"):
        assert _tar_bytes(tmp_path / run / "latents") == _tar_bytes(tmp_path / "lightning" / "latents")
        assert (tmp_path / run / "latents" / "stats.json").read_bytes() == (tmp_path / "lightning" / "latents" / "stats.json").read_bytes()


def test_posterior_sample_differs_from_mode_and_batch_does_not_matter(one_thread):
    model = build_autoencoder("kl-f4-tiny").eval()
    x = torch.rand(4, 3, 16, 24) * 2 - 1  # non-square: a swapped H/W would fail
    keys = ["a", "b", "c", "d"]
    mode = encode_latents(model, x, keys, posterior="mode")
    sample = encode_latents(model, x, keys, posterior="sample", seed=3)
    assert mode.shape == (4, 3, 4, 6) and not torch.equal(mode, sample)
    halves = torch.cat([encode_latents(model, x[:2], keys[:2], posterior="sample", seed=3),
                        encode_latents(model, x[2:], keys[2:], posterior="sample", seed=3)])
    assert torch.allclose(halves, sample, atol=1e-5)


def test_vq_keeps_unit_scale_unless_asked(inputs, tmp_path):
    stats = _run(inputs, tmp_path / "auto", model="vq", pairs=False)
    assert stats["scale_factor"] == 1.0 and stats["kind"] == "vq"
    assert "pairs_train" not in stats["counts"]
    asked = _run(inputs, tmp_path / "asked", model="vq", pairs=False, scale_rule="dataset")
    assert asked["scale_factor"] == pytest.approx(1 / asked["dataset"]["std"])


def test_running_moments_match_the_whole_tensor():
    z = torch.randn(37, 4, 3, 5, generator=torch.Generator().manual_seed(0)) * torch.tensor([1.0, 2.0, 0.5, 3.0])[None, :, None, None] + 0.7
    moments = RunningMoments(4)
    for chunk in z.split(5):
        moments.update(chunk)
    assert moments.overall_std == pytest.approx(first_batch_std(z), rel=1e-9)
    assert torch.allclose(moments.var.sqrt(), z.double().std(dim=(0, 2, 3), unbiased=False), rtol=1e-9)
    bad = z.clone()
    bad[0, 0, 0, 0] = float("nan")
    moments.update(bad)
    assert moments.non_finite == 1


def test_scale_rules():
    assert choose_scale_factor("auto", kind="kl", dataset_std=4.0, first_std=5.0) == 0.25
    assert choose_scale_factor("first_batch", kind="kl", dataset_std=4.0, first_std=5.0) == 0.2
    assert choose_scale_factor("fixed", kind="kl", dataset_std=4.0, first_std=5.0, fixed=0.18215) == 0.18215
    assert choose_scale_factor("auto", kind="vq", dataset_std=4.0, first_std=5.0) == 1.0
    with pytest.raises(ValueError, match="degenerate"):
        choose_scale_factor("dataset", kind="kl", dataset_std=0.0, first_std=1.0)


def test_first_batch_rule_warns_when_far_from_one(inputs, tmp_path):
    stats = _run(inputs, tmp_path, scale_rule="fixed", scale_value=0.01)
    assert any("scaled latent std" in w for w in stats["warnings"])


def test_latent_batches_collate_for_the_ldm(inputs, tmp_path):
    _run(inputs, tmp_path)
    urls = sorted(str(p) for p in (tmp_path / "latents" / "pairs").glob("train-*.tar"))
    samples = list(latent_dataset(urls, scale_factor=0.5))[:4]
    batch = collate(samples)
    assert batch["z"].shape == (4, 3, 8, 8) and batch["lr"].shape == (4, 3, 8, 8)
    assert batch["label"].dtype == torch.long and len(batch["caption"]) == 4


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_shard_names_shard_and_key(inputs, tmp_path, damage):
    broken = tmp_path / "images"
    broken.mkdir()
    for shard in sorted((inputs / "images").glob("*.tar")):
        (broken / shard.name).write_bytes(shard.read_bytes())
    first = broken / "train-000000.tar"
    data = bytearray(first.read_bytes())
    if damage == "garbage":  # bytes flipped inside the third sample's PNG data
        at = data.find(b"IDAT", data.find(b"IDAT", data.find(b"IDAT") + 1) + 1) + 8
        data[at : at + 64] = b"\xab" * 64
    else:  # a copy cut short
        data = data[: len(data) // 2 + 777]  # mid-member
    first.write_bytes(bytes(data))
    params = parse_params({"data": DATA, "cache_latents": {"accelerator": "cpu", "devices": 1, "pairs": False, "label_maps": False}})
    with pytest.raises(Exception, match="train-000000.tar: sample"):
        run(params, Paths(broken, tmp_path / "no-pairs", inputs / "kl", tmp_path / "latents", tmp_path / "report.json"))
    assert not (tmp_path / "latents").exists()


def test_missing_autoencoder_is_a_clear_cli_error(inputs, tmp_path):
    (tmp_path / "params.yaml").write_text("{}\n")
    result = subprocess.run([sys.executable, "-m", "stages.cache_latents", "--params", str(tmp_path / "params.yaml"),
                             "--images", str(inputs / "images"),
                             "--pairs", str(inputs / "pairs"), "--model", str(tmp_path / "nothing"),
                             "--out", str(tmp_path / "latents"), "--report", str(tmp_path / "r.json")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "model.safetensors: no such file" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_two_cpu_processes_write_the_same_bytes(inputs, tmp_path):
    """Lightning DDP over 2 CPU processes, shards split by rank: the same cache as one process."""
    single = _run(inputs, tmp_path / "one", threads=1)  # same threads per process: same float rounding
    params = {"data": DATA, "cache_latents": {"batch_size": 16, "accelerator": "cpu", "devices": 2, "strategy": "ddp", "label_maps": False,
                                              "threads": 1}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = subprocess.run([sys.executable, "-m", "stages.cache_latents", "--params", str(tmp_path / "params.yaml"),
                             "--images", str(inputs / "images"), "--pairs", str(inputs / "pairs"),
                             "--model", str(inputs / "kl"), "--out", str(tmp_path / "two" / "latents"),
                             "--report", str(tmp_path / "two" / "report.json")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert _tar_bytes(tmp_path / "one" / "latents") == _tar_bytes(tmp_path / "two" / "latents")
    two = json.loads((tmp_path / "two" / "latents" / "stats.json").read_text())
    assert two["scale_factor"] == single["scale_factor"]
