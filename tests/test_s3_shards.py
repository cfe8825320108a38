"""Shard folders in a bucket: the data stages write the same bytes to s3:// as to disk, train_ldm streams them,
an incomplete folder is refused. A real S3 endpoint on loopback (moto), as tests/test_storage.py uses."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import pytest
import yaml

from ldm.data.loader import shard_urls
from ldm.data.remote import configure, publish, staging_for
from ldm.data.shards import MANIFEST, shards_sha256
from ldm.errors import InputNotFound
from ldm.latents.stats import STATS
from ldm.storage.settings import S3Settings
from stages import cache_latents, degrade, download, train_ldm
from stages.cli import build_parser
from stages.params import parse_params

DATA = {"resolution": 32, "shard_size": 10}
DOWNLOAD = {"embedded": {"train_crops": 24, "val_crops": 8}}
CACHE = {"batch_size": 8, "accelerator": "cpu", "devices": 1, "threads": 1, "label_maps": False}
TRAIN = {"steps": 2, "batch_size": 4, "val_every": 2, "checkpoint_every": 2, "threads": 1, "shuffle_buffer": 20}


@pytest.fixture(autouse=True, scope="module")
def _quiet():
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)


@pytest.fixture(scope="module")
def local(tmp_path_factory, save_autoencoder) -> Path:
    """The data stages on local folders: images, pairs, an untrained kl-f4-tiny and its latent cache."""
    out = tmp_path_factory.mktemp("local")
    download.run(parse_params({"data": DATA, "download": DOWNLOAD}), download.Paths(out / "images", out / "download.json", out / "c"))
    degrade.run(parse_params({"data": DATA, "degrade": {"workers": 1, "grid_pairs": 2}}),
                degrade.Paths(out / "images", out / "pairs", out / "degrade.json", out / "degrade.png"))
    save_autoencoder(out / "autoencoder", "kl-f4-tiny")
    cache_latents.run(parse_params({"data": DATA, "cache_latents": CACHE}),
                      cache_latents.Paths(out / "images", out / "pairs", out / "autoencoder", out / "latents", out / "cache.json"))
    return out


@pytest.fixture
def bucket(s3_env) -> str:
    """A fresh bucket on the loopback endpoint, which this process's S3 settings point at."""
    name = f"shards-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=s3_env).create_bucket(Bucket=name)
    configure(S3Settings(endpoint_url=s3_env))
    yield name
    configure(S3Settings())


def _params(endpoint: str, **sections) -> dict:
    return {"data": DATA, "storage": {"s3": {"endpoint_url": endpoint}}, **sections}


def _objects(endpoint: str, bucket: str, prefix: str) -> dict[str, bytes]:
    client = boto3.client("s3", endpoint_url=endpoint)
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/").get("Contents", [])]
    return {key.removeprefix(f"{prefix}/"): client.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys}


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _upload_cache(local: Path, bucket: str, tmp_path: Path) -> str:
    """The local latent cache published to s3://bucket/latents (a copy: publish consumes its staging folder)."""
    shutil.copytree(local / "latents", tmp_path / "staging")
    publish(tmp_path / "staging", f"s3://{bucket}/latents", STATS)
    return f"s3://{bucket}/latents"


def test_data_stages_write_the_local_bytes_to_a_bucket(local, bucket, s3_env, tmp_path):
    url = f"s3://{bucket}"
    report = download.run(parse_params(_params(s3_env, download=DOWNLOAD)),
                          download.Paths(f"{url}/images", tmp_path / "download.json", tmp_path / "c"))
    degrade.run(parse_params(_params(s3_env, degrade={"workers": 1, "grid_pairs": 2})),
                degrade.Paths(local / "images", f"{url}/pairs", tmp_path / "degrade.json", tmp_path / "degrade.png"))
    stats = cache_latents.run(parse_params(_params(s3_env, cache_latents=CACHE)),
                              cache_latents.Paths(f"{url}/images", f"{url}/pairs", local / "autoencoder", f"{url}/latents",
                                                  tmp_path / "cache.json"))
    for folder in ("images", "pairs", "latents"):
        assert _objects(s3_env, bucket, folder) == _files(local / folder), folder
    assert MANIFEST in _files(local / "images") and "pairs/train-000000.tar" in _files(local / "latents")
    assert report["shards"] == json.loads((local / "download.json").read_text())["shards"]
    assert stats["lineage"]["inputs_sha256"] == json.loads((local / "latents" / STATS).read_text())["lineage"]["inputs_sha256"]
    assert shards_sha256(shard_urls(f"{url}/latents", "train")) == shards_sha256(shard_urls(local / "latents", "train"))
    assert not staging_for(f"{url}/latents").exists() and not staging_for(f"{url}/images").exists()


def test_a_new_cache_replaces_the_old_one_whole(bucket, tmp_path):
    url = f"s3://{bucket}/cache"
    for count in (3, 1):
        staging = tmp_path / f"staging-{count}"
        staging.mkdir()
        for index in range(count):
            (staging / f"train-{index:06d}.tar").write_bytes(b"shard %d of %d" % (index, count))
        (staging / STATS).write_text("{}")
        publish(staging, url, STATS)
        assert not staging.exists()
    assert shard_urls(url, "train") == [f"{url}/train-000000.tar"]
    (tmp_path / "train-000000.tar").write_bytes(b"shard 0 of 1")
    assert shards_sha256(shard_urls(url, "train")) == shards_sha256([str(tmp_path / "train-000000.tar")])


def test_train_ldm_streams_the_cache_from_a_bucket(local, bucket, s3_env, tmp_path):
    """The same model, losses and data hash as from the local folder, for the same seed."""
    runs = {}
    for name, cache in (("here", local / "latents"), ("there", _upload_cache(local, bucket, tmp_path))):
        out = tmp_path / name
        runs[name] = train_ldm.run(parse_params(_params(s3_env, train_ldm=TRAIN)),
                                   train_ldm.Paths(cache, local / "autoencoder", out / "model", out / "ckpt", out / "m.json",
                                                   out / "loss.csv", "train_ldm"))
    here, there = tmp_path / "here", tmp_path / "there"
    assert (there / "model" / "model.safetensors").read_bytes() == (here / "model" / "model.safetensors").read_bytes()
    assert (there / "loss.csv").read_text() == (here / "loss.csv").read_text()
    assert runs["there"]["lineage"]["inputs_sha256"] == runs["here"]["lineage"]["inputs_sha256"]


# The batches of a latent loader as digests; the S3 side runs in a fresh process, whose loader worker starts from
# a forkserver that has the AWS environment, as on a training node.
LOADER = """
def digests(folder, endpoint, workers):
    import hashlib
    from ldm.data.latents import latent_loader
    from ldm.data.loader import shard_urls
    from ldm.data.loader_config import LoaderSettings
    from ldm.data.remote import configure
    from ldm.storage.settings import S3Settings
    configure(S3Settings(endpoint_url=endpoint))
    loader = latent_loader(shard_urls(folder, "train"), scale_factor=1.0, batch_size=4, shuffle=8, seed=3,
                           settings=LoaderSettings(num_workers=int(workers)))
    return [hashlib.sha256(b["z"].numpy().tobytes() + repr(b["caption"]).encode()).hexdigest() for b in loader]
"""


def test_a_loader_worker_streams_from_a_bucket(local, bucket, s3_env, tmp_path):
    url = _upload_cache(local, bucket, tmp_path)
    code = LOADER + "\nimport sys\nprint('\\n'.join(digests(*sys.argv[1:])))\n"
    result = subprocess.run([sys.executable, "-c", code, url, s3_env, "1"], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    scope: dict = {}
    exec(LOADER, scope)  # noqa: S102 - the same function, here on the local folder without workers
    here = scope["digests"](str(local / "latents"), s3_env, 0)
    assert len(here) == 6 and result.stdout.split() == here


def test_a_cache_without_its_marker_is_refused(local, bucket, s3_env, tmp_path, capsys):
    url = _upload_cache(local, bucket, tmp_path)
    boto3.client("s3", endpoint_url=s3_env).delete_object(Bucket=bucket, Key=f"latents/{STATS}")
    params = parse_params(_params(s3_env, train_ldm=TRAIN))
    with pytest.raises(InputNotFound, match=rf"{url}/stats.json: no such object, so the folder is missing or incomplete; "
                                            rf"run `python -m stages.cache_latents` with --out {url}"):
        train_ldm.run(params, train_ldm.Paths(url, local / "autoencoder", tmp_path / "m", tmp_path / "c", tmp_path / "x.json",
                                              tmp_path / "l.csv", "train_ldm"))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(_params(s3_env, cache_latents=CACHE)))
    code = cache_latents.main(["--params", str(tmp_path / "params.yaml"), "--images", f"s3://{bucket}/latents",
                               "--pairs", f"s3://{bucket}/none", "--model", str(local / "autoencoder"),
                               "--out", f"s3://{bucket}/out", "--report", str(tmp_path / "r.json")])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and error == [f"error: s3://{bucket}/latents/{MANIFEST}: no such object, so the folder is missing or "
                                   f"incomplete; run `python -m stages.download` with --out s3://{bucket}/latents"]


def test_stage_options_take_urls_and_refuse_other_schemes(capsys):
    parser = build_parser(cache_latents.Paths, "", "cache_latents")
    args = parser.parse_args(["--params", "p.yaml", "--images", "s3://abc/images/", "--pairs", "pairs", "--model", "m",
                              "--out", "s3://abc/x", "--report", "r.json"])
    assert (args.images, args.pairs, args.out) == ("s3://abc/images", Path("pairs"), "s3://abc/x")
    for bad in ("http://host/images", "s3://a/x"):
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args(["--params", "p.yaml", "--images", bad, "--pairs", "p", "--model", "m", "--out", "o",
                               "--report", "r.json"])
        assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "only s3://bucket/prefix URLs or local paths are allowed" in err and "at least 3 characters" in err
