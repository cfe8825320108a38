"""Releases on a local folder and on a real S3 endpoint (moto on loopback): publish, pull, list, faults."""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.request
import uuid
from pathlib import Path

import boto3
import pytest

from flows.cli import main
from ldm.storage import ChecksumError, ReleaseNotFound, S3Settings, StoreError, open_store
from ldm.storage.s3 import StoreAccessDenied, StoreUnavailable


def _settings(endpoint: str, **overrides) -> S3Settings:
    """Quick failure in tests: two attempts, short timeouts."""
    return S3Settings(**{"endpoint_url": endpoint, "max_attempts": 2, "connect_timeout_s": 2.0, "read_timeout_s": 10.0, **overrides})


def _bucket(endpoint: str) -> str:
    name = f"releases-{uuid.uuid4().hex[:10]}"
    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket=name)
    client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    """The same ReleaseStore interface on both backends."""
    if request.param == "local":
        return open_store(str(tmp_path / "store"))
    endpoint = request.getfixturevalue("s3_env")
    return open_store(f"s3://{_bucket(endpoint)}/team/models", _settings(endpoint))


@pytest.fixture
def bundle(tmp_path) -> Path:
    """A model folder: weights, config with lineage, a nested file."""
    folder = tmp_path / "model"
    (folder / "extra").mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(os.urandom(300_000))
    (folder / "config.json").write_text(json.dumps({"scale_factor": 0.18, "lineage": {"params_sha256": {"ldm": "ab" * 32}}}))
    (folder / "extra" / "notes.txt").write_text("tiny\n")
    return folder


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_publish_pull_and_list(store, bundle, tmp_path):
    release, new = store.publish(bundle, "ldm", alias="prod", params={"data": {"resolution": 64}}, metrics={"fid": 12.5},
                                 git_revision="0123abcd")
    assert new and release.version == 1 and release.aliases == ("prod",)
    dest = tmp_path / "pulled"
    pulled = store.pull("ldm", dest, version=1)
    manifest = json.loads((dest / "manifest.json").read_text())
    assert _files(dest) == {**_files(bundle), "manifest.json": (dest / "manifest.json").read_bytes()}
    assert {row["path"]: row["size"] for row in manifest["files"]} == {k: len(v) for k, v in _files(bundle).items()}
    assert manifest["git_revision"] == "0123abcd" and manifest["params"] == {"data": {"resolution": 64}}
    assert manifest["lineage"] == {"config.json": {"params_sha256": {"ldm": "ab" * 32}}}
    assert manifest["content_sha256"] == pulled.content_sha256 == release.content_sha256
    [listed] = store.releases("ldm")
    assert (listed.version, listed.aliases, listed.files) == (1, ("prod",), 3)
    assert listed.created.endswith("+00:00")


def test_same_bundle_twice_is_one_release_and_aliases_move(store, bundle, tmp_path):
    first, _ = store.publish(bundle, "ldm", alias="prod")
    again, new = store.publish(bundle, "ldm", alias="prod")
    assert (again.version, new) == (first.version, False)
    assert [r.version for r in store.releases("ldm")] == [1]
    (bundle / "model.safetensors").write_bytes(os.urandom(1000))
    second, new = store.publish(bundle, "ldm", alias="staging")
    assert (second.version, new) == (2, True)
    assert {r.version: r.aliases for r in store.releases("ldm")} == {1: ("prod",), 2: ("staging",)}
    assert store.pull("ldm", tmp_path / "latest").version == 2  # neither version nor alias: the latest
    assert store.pull("ldm", tmp_path / "prod", alias="prod").version == 1
    store.set_alias("ldm", "prod", 2)
    assert store.resolve("ldm", alias="prod").version == 2
    with pytest.raises(ReleaseNotFound, match="no alias 'nope'.*aliases: prod, staging"):
        store.resolve("ldm", alias="nope")
    with pytest.raises(ReleaseNotFound, match="no version 9"):
        store.pull("ldm", tmp_path / "x", version=9)


def _tamper(store, release) -> str:
    """Replace the stored bytes of model.safetensors behind the store's back; its path comes back."""
    entry = next(row for row in release.manifest["files"] if row["path"] == "model.safetensors")
    key = f"ldm/objects/{entry['sha256']}"
    backend = store.backend
    if hasattr(backend, "client"):
        backend.client.put_object(Bucket=backend.bucket, Key=f"{backend.prefix}/{key}", Body=os.urandom(entry["size"]))
    else:
        (backend.root / key).write_bytes(os.urandom(entry["size"]))
    return entry["path"]


def test_tampered_object_is_refused_and_nothing_is_left(store, bundle, tmp_path):
    release, _ = store.publish(bundle, "ldm")
    path = _tamper(store, release)
    dest = tmp_path / "out" / "ldm"
    with pytest.raises(ChecksumError, match=rf"{path}: checksum mismatch in ldm release 1"):
        store.pull("ldm", dest, version=1)
    assert not dest.exists()
    assert list((tmp_path / "out").iterdir()) == []  # no partial folder either


def test_interrupted_upload_leaves_no_visible_release(store, bundle, tmp_path, monkeypatch):
    real = store.backend.put_file
    calls = []

    def fail_on_second(key, local, sha256):
        calls.append(key)
        if len(calls) == 2:
            raise ConnectionResetError("simulated: connection lost mid-upload")
        real(key, local, sha256)

    monkeypatch.setattr(store.backend, "put_file", fail_on_second)
    with pytest.raises(ConnectionResetError):
        store.publish(bundle, "ldm", alias="prod")
    assert store.releases("ldm") == [] and store.aliases("ldm") == {}
    with pytest.raises(ReleaseNotFound):
        store.pull("ldm", tmp_path / "dest")
    monkeypatch.setattr(store.backend, "put_file", real)
    release, new = store.publish(bundle, "ldm", alias="prod")
    assert (release.version, new) == (1, True)
    store.pull("ldm", tmp_path / "dest", alias="prod")


def test_pull_replaces_a_previous_pull_but_never_a_foreign_folder(store, bundle, tmp_path):
    store.publish(bundle, "ldm")
    (bundle / "config.json").write_text("{}")
    store.publish(bundle, "ldm")
    dest = tmp_path / "dest"
    store.pull("ldm", dest, version=1)
    store.pull("ldm", dest, version=2)
    assert json.loads((dest / "manifest.json").read_text())["version"] == 2
    assert (dest / "config.json").read_text() == "{}"
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(StoreError, match="is not a pulled release"):
        store.pull("ldm", foreign)
    assert _files(foreign) == {"keep.txt": b"mine"}


def test_names_and_paths_are_checked(store, bundle, tmp_path):
    with pytest.raises(StoreError, match="release name '../x' is not allowed"):
        store.publish(bundle, "../x")
    with pytest.raises(StoreError, match="alias 'a/b' is not allowed"):
        store.publish(bundle, "ok", alias="a/b")
    with pytest.raises(StoreError, match="no such file or directory"):
        store.publish(tmp_path / "absent", "ok")


def test_multipart_transfer_round_trips(s3_env, tmp_path):
    store = open_store(f"s3://{_bucket(s3_env)}", _settings(s3_env, multipart_threshold_mb=5, multipart_chunksize_mb=5))
    folder = tmp_path / "big"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(os.urandom(11 << 20))  # three parts
    release, _ = store.publish(folder, "big")
    head = store.backend.client.head_object(Bucket=store.backend.bucket, Key=f"big/objects/{release.manifest['files'][0]['sha256']}")
    assert head["ETag"].strip('"').endswith("-3")  # a multipart upload's ETag counts its parts
    store.pull("big", tmp_path / "back")
    assert (tmp_path / "back" / "weights.bin").read_bytes() == (folder / "weights.bin").read_bytes()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_endpoint_is_one_clear_error_within_bounded_time(s3_env, tmp_path, capsys):
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    store = open_store("s3://nowhere/x", _settings(endpoint, connect_timeout_s=1.0))
    start = time.monotonic()
    with pytest.raises(StoreUnavailable, match=r"cannot reach http://127\.0\.0\.1:\d+ .* after 2 attempt\(s\)"):
        store.releases("ldm")
    assert time.monotonic() - start < 15
    params = tmp_path / "params.yaml"
    params.write_text(f"storage:\n  s3:\n    endpoint_url: {endpoint}\n    max_attempts: 2\n    connect_timeout_s: 1.0\n")
    assert main(["releases", "ldm", "--store", "s3://nowhere/x", "--params", str(params)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot reach") and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.fixture
def moto_auth(s3_env):
    """moto checks credentials against its IAM while this fixture is active."""
    def set_count(value: str) -> None:
        request = urllib.request.Request(f"{s3_env}/moto-api/reset-auth", data=value.encode(), method="POST",
                                         headers={"Content-Type": "text/plain"})
        urllib.request.urlopen(request, timeout=10).read()

    set_count("0")
    yield
    set_count("inf")


def test_bad_credentials_are_one_clear_error_without_the_secret(s3_env, bundle, tmp_path, capsys, moto_auth, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-value")
    store = open_store("s3://anybucket/x", _settings(s3_env))
    with pytest.raises(StoreAccessDenied, match="refused the credentials .*InvalidAccessKeyId") as info:
        store.publish(bundle, "ldm")
    assert "very-secret-value" not in str(info.value)
    params = tmp_path / "params.yaml"
    params.write_text(f"storage:\n  s3:\n    endpoint_url: {s3_env}\n    max_attempts: 2\n")
    assert main(["publish", str(bundle), "--name", "ldm", "--store", "s3://anybucket/x", "--params", str(params)]) == 2
    captured = capsys.readouterr()
    assert "refused the credentials" in captured.err and "very-secret-value" not in captured.err + captured.out


def test_cli_publish_releases_pull(tmp_path, bundle, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LDM_STORE", str(tmp_path / "store"))  # no --store: the environment names it
    metrics = tmp_path / "evaluate.json"
    metrics.write_text(json.dumps({"fid": 20.5, "counts": {"val": 240}, "lineage": {"seed": 0}}))
    assert main(["publish", str(bundle), "--name", "ldm", "--alias", "prod", "--metrics", str(metrics)]) == 0
    assert "published ldm version 1" in capsys.readouterr().out
    assert main(["publish", str(bundle), "--name", "ldm", "--metrics", str(metrics)]) == 0
    assert "unchanged: these files are already ldm version 1" in capsys.readouterr().out
    assert main(["releases", "ldm", "--json"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert listed["version"] == 1 and listed["aliases"] == ["prod"]
    assert main(["pull", "ldm", "--alias", "prod", "-o", "out"]) == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["metrics"] == {"metrics/evaluate.json:counts.val": 240.0, "metrics/evaluate.json:fid": 20.5}
    assert (tmp_path / "out" / "metrics" / "evaluate.json").is_file()
    assert main(["pull", "ldm", "--version", "7", "-o", "other"]) == 2
    err = capsys.readouterr().err
    assert err == "error: 'ldm' has no version 7 in " + str(tmp_path / "store") + " (versions: 1)\n"
    assert not (tmp_path / "other").exists()
    with pytest.raises(SystemExit) as exit_info:
        main(["pull", "ldm", "--version", "1", "--alias", "prod", "-o", "x"])
    assert exit_info.value.code == 2


def test_store_init_creates_a_versioned_bucket(s3_env, tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text(f"storage:\n  s3:\n    endpoint_url: {s3_env}\n")
    assert main(["store", "init", "--store", "s3://fresh-bucket/ldm", "--params", str(params)]) == 0
    assert "bucket created, versioning enabled" in capsys.readouterr().out
    status = boto3.client("s3", endpoint_url=s3_env).get_bucket_versioning(Bucket="fresh-bucket")["Status"]
    assert status == "Enabled"
    assert main(["store", "init", "--store", "s3://fresh-bucket/ldm", "--params", str(params)]) == 0
    assert "bucket exists" in capsys.readouterr().out


def test_params_never_echo_a_credential():
    from stages.params import ParamsError, parse_params

    with pytest.raises(ParamsError) as info:
        parse_params({"storage": {"dvc_remote": "s3://AKIAXXX:s3cr3t@bucket/dvc"}})
    assert "s3cr3t" not in str(info.value) and "storage.dvc_remote: must not carry credentials" in str(info.value)


def test_store_urls_are_checked_without_echoing_secrets():
    with pytest.raises(StoreError, match="must not carry credentials") as info:
        open_store("s3://AKIA:s3cr3t@bucket/x")
    assert "s3cr3t" not in str(info.value)
    with pytest.raises(StoreError, match="unsupported store"):
        open_store("gs://bucket/x")


def test_publishing_to_an_unversioned_bucket_warns(s3_env, bundle, caplog):
    boto3.client("s3", endpoint_url=s3_env).create_bucket(Bucket="plain-bucket")
    store = open_store("s3://plain-bucket", _settings(s3_env))
    with caplog.at_level("WARNING", logger="ldm.storage.store"):
        store.publish(bundle, "ldm")
    assert "bucket versioning off" in caplog.text
