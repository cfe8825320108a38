"""Manifest downloads over real HTTP on loopback: resume, retries, checksums."""

from __future__ import annotations

import hashlib
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from ldm.data.fetch import ChecksumMismatch, Entry, FetchFailed, fetch, read_manifest
from ldm.data.folder import DataError
from stages.download import Paths, main, run
from stages.params import parse_params


class Files(BaseHTTPRequestHandler):
    """Serves `files`, honours Range, fails the first `flaky[path]` requests with 503."""

    files: dict[str, bytes] = {}
    flaky: dict[str, int] = {}
    log: list[tuple[str, str | None]] = []

    def do_GET(self):  # noqa: N802 - http.server's naming
        self.log.append((self.path, self.headers.get("Range")))
        if self.flaky.get(self.path, 0) > 0:
            self.flaky[self.path] -= 1
            self.send_error(503)
            return
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].removeprefix("bytes=").rstrip("-"))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    Files.files, Files.flaky, Files.log = {}, {}, []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Files)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _manifest(tmp_path: Path, base: str, count: int) -> Path:
    lines = []
    for index in range(count):
        body = _png(index)
        Files.files[f"/img{index}.png"] = body
        lines.append({"url": f"{base}/img{index}.png", "sha256": hashlib.sha256(body).hexdigest(), "class": ["a", "b"][index % 2]})
    path = tmp_path / "manifest.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return path


def test_manifest_stage_downloads_once_and_verifies(tmp_path, server):
    manifest = _manifest(tmp_path, server, 8)
    params = parse_params({"data": {"resolution": 32}, "download": {"source": "manifest", "manifest": {"path": str(manifest), "val_fraction": 0.25, "workers": 4}}})
    paths = Paths(tmp_path / "images", tmp_path / "report.json", tmp_path / "cache")
    report = run(params, paths)
    assert report["counts"]["train"] + report["counts"]["val"] == 8
    assert report["class_names"] == ["a", "b"]
    assert len(Files.log) == 8
    again = run(params, Paths(tmp_path / "images2", tmp_path / "report2.json", tmp_path / "cache"))
    assert len(Files.log) == 8  # everything came from the verified cache
    assert again["shards"] == report["shards"]


def test_interrupted_download_resumes_with_range(tmp_path, server):
    body = _png(0) * 3
    Files.files["/big.png"] = body
    entry = Entry(f"{server}/big.png", hashlib.sha256(body).hexdigest(), None, None)
    (tmp_path / f"{entry.sha256}.part").write_bytes(body[:1000])
    path = fetch(entry, tmp_path, retries=0, timeout_s=5)
    assert path.read_bytes() == body
    assert Files.log == [("/big.png", "bytes=1000-")]


def test_transient_errors_are_retried_and_permanent_ones_are_not(tmp_path, server):
    Files.files["/ok.png"] = body = _png(1)
    Files.flaky["/ok.png"] = 2
    entry = Entry(f"{server}/ok.png", hashlib.sha256(body).hexdigest(), None, None)
    assert fetch(entry, tmp_path, retries=2, timeout_s=5, backoff_s=0.01).read_bytes() == body
    assert len(Files.log) == 3
    missing = Entry(f"{server}/missing.png", "0" * 64, None, None)
    with pytest.raises(FetchFailed, match="404"):
        fetch(missing, tmp_path, retries=5, timeout_s=5, backoff_s=0.01)
    assert len(Files.log) == 4  # one request: a 404 is not retried


def test_checksum_mismatch_is_fatal_and_leaves_no_shard(tmp_path, server):
    manifest = _manifest(tmp_path, server, 4)
    Files.files["/img2.png"] = _png(99)  # the server now returns other bytes
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"download": {"source": "manifest", "manifest": {"path": str(manifest), "retries": 0}}}))
    out = tmp_path / "images"
    out.mkdir()
    (out / "train-000000.tar").write_bytes(b"previous output")
    code = main(["--params", str(params), "--out", str(out), "--report", str(tmp_path / "r.json"), "--cache", str(tmp_path / "cache")])
    assert code == 2
    assert (out / "train-000000.tar").read_bytes() == b"previous output"  # nothing replaced
    assert not (tmp_path / "r.json").exists()
    assert not list((tmp_path / "cache").glob("*.part"))


def test_manifest_lines_are_validated(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"url": "ftp://x/y.png", "sha256": "' + "a" * 64 + '"}\n')
    with pytest.raises(DataError, match=r"m.jsonl:1: url must start with"):
        read_manifest(path)
    path.write_text('{"url": "https://x/y.png", "sha256": "abc"}\n')
    with pytest.raises(DataError, match=r"m.jsonl:1: sha256 must be 64 hex digits"):
        read_manifest(path)
    path.write_text("not json\n")
    with pytest.raises(DataError, match=r"m.jsonl:1: expected a JSON object"):
        read_manifest(path)


def test_checksum_mismatch_error_names_both_hashes(tmp_path, server):
    Files.files["/x.png"] = _png(3)
    entry = Entry(f"{server}/x.png", "f" * 64, None, None)
    with pytest.raises(ChecksumMismatch, match="the manifest says ffff"):
        fetch(entry, tmp_path, retries=0, timeout_s=5)


def test_s3_urls_download_through_a_real_s3_endpoint(tmp_path, monkeypatch):
    """moto's threaded server speaks the S3 protocol on loopback; boto3 reaches it over HTTP."""
    import boto3
    from moto.server import ThreadedMotoServer

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    moto.start()
    try:
        host, port = moto.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        for name, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
                            "AWS_ENDPOINT_URL": endpoint}.items():
            monkeypatch.setenv(name, value)
        client = boto3.client("s3")
        client.create_bucket(Bucket="photos")
        body = _png(5)
        client.put_object(Bucket="photos", Key="cats/a.png", Body=body)
        entry = Entry("s3://photos/cats/a.png", hashlib.sha256(body).hexdigest(), "cats", None)
        assert fetch(entry, tmp_path, retries=1, timeout_s=10).read_bytes() == body
        with pytest.raises(FetchFailed):
            fetch(Entry("s3://photos/none.png", "0" * 64, None, None), tmp_path, retries=3, timeout_s=10, backoff_s=0.01)
    finally:
        moto.stop()
