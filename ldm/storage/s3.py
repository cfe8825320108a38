"""An S3 bucket (AWS, MinIO or any S3-compatible store) as a release store, through boto3.

Every request has bounded retries (botocore's standard mode) and connect/read
timeouts; large files move in parts (TransferConfig). Credentials come only from
the AWS chain; an unreachable endpoint or refused credentials become one
StoreError line that says what to check, never a traceback with a secret in it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import boto3
from boto3.exceptions import RetriesExceededError, S3TransferFailedError, S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (BotoCoreError, ClientError, ConnectionClosedError, ConnectTimeoutError, EndpointConnectionError,
                                 NoCredentialsError, PartialCredentialsError, ReadTimeoutError, ResponseStreamingError)
from botocore.response import StreamingBody

from ldm.storage.backend import NotFound
from ldm.storage.manifest import StoreError
from ldm.storage.settings import S3Settings

log = logging.getLogger(__name__)
_MB = 1 << 20
_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "403", "Forbidden"}
_MISSING = {"NoSuchKey", "404", "NotFound"}


class StoreUnavailable(StoreError):
    """The endpoint did not answer after the bounded retries."""


class StoreAccessDenied(StoreError):
    """The store refused the credentials (or there were none)."""


def split_url(url: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` -> ("bucket", "some/prefix")."""
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    if "@" in bucket:  # never echo it: it may hold a secret
        raise StoreError("an s3:// URL must not carry credentials (user:secret@); they come from the AWS environment")
    if len(bucket) < 3:
        raise StoreError(f"{url}: expected s3://BUCKET[/PREFIX] with a bucket name of at least 3 characters")
    return bucket, prefix.strip("/")


def make_client(settings: S3Settings):  # noqa: ANN201 - botocore generates the client class
    """An S3 client with bounded retries, timeouts and the checksum policy of `settings`."""
    config = Config(
        retries={"max_attempts": settings.max_attempts, "mode": "standard"},
        connect_timeout=settings.connect_timeout_s,
        read_timeout=settings.read_timeout_s,
        request_checksum_calculation=settings.checksum,
        response_checksum_validation=settings.checksum,
    )
    return boto3.session.Session().client("s3", endpoint_url=settings.endpoint_url or None,
                                          region_name=settings.region or None, config=config)


class S3Backend:
    """Keys live under `s3://bucket/prefix/`."""

    def __init__(self, url: str, settings: S3Settings = S3Settings()) -> None:
        self.bucket, self.prefix = split_url(url)
        self.url = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self.settings = settings
        self.client = make_client(settings)
        self.transfer = TransferConfig(multipart_threshold=settings.multipart_threshold_mb * _MB,
                                       multipart_chunksize=settings.multipart_chunksize_mb * _MB,
                                       max_concurrency=settings.max_concurrency,
                                       num_download_attempts=settings.max_attempts)

    @property
    def endpoint(self) -> str:
        """The endpoint as an error names it."""
        return self.settings.endpoint_url or "the AWS endpoint"

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Turn botocore's exceptions into one StoreError line that says what to do."""
        endpoint = self.endpoint
        try:
            yield
        except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError,
                RetriesExceededError) as exc:  # the last: a download's stream cut or stalled on every attempt
            raise StoreUnavailable(f"cannot reach {endpoint} for {self.url} after {self.settings.max_attempts} attempt(s) "
                                   f"({type(exc).__name__}); check storage.s3.endpoint_url (or AWS_ENDPOINT_URL) and that the server is up") from None
        except (NoCredentialsError, PartialCredentialsError):
            raise StoreAccessDenied(f"no AWS credentials for {self.url}; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                                    "or AWS_PROFILE") from None
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            if code in _MISSING:
                raise NotFound(f"{what}: not in {self.url}") from None
            if code in _DENIED:
                raise StoreAccessDenied(f"{endpoint} refused the credentials for {self.url} ({code}); check AWS_ACCESS_KEY_ID/"
                                        "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) and the bucket policy") from None
            if code == "NoSuchBucket":
                raise StoreError(f"bucket {self.bucket!r} does not exist at {endpoint}; create it with versioning on: "
                                 f"ldm store init --store s3://{self.bucket}") from None
            raise StoreError(f"S3 {what} in {self.url} failed: {code} {error.get('Message', '')}".rstrip()) from None
        except (S3UploadFailedError, S3TransferFailedError) as exc:
            raise StoreError(f"S3 transfer of {what} in {self.url} failed: {exc}") from None
        except BotoCoreError as exc:
            raise StoreError(f"S3 {what} in {self.url} failed: {exc}") from None

    def has_object(self, key: str, size: int) -> bool:
        try:
            with self._errors(key):
                head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except NotFound:
            return False
        return head["ContentLength"] == size

    def put_file(self, key: str, local: Path, sha256: str) -> None:
        with self._errors(key):
            self.client.upload_file(str(local), self.bucket, self._key(key), ExtraArgs={"Metadata": {"sha256": sha256}},
                                    Config=self.transfer)

    def put_bytes(self, key: str, data: bytes) -> None:
        with self._errors(key):
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, ContentType="application/json")

    def put_bytes_once(self, key: str, data: bytes) -> bool:
        try:
            with self._errors(key):
                # S3 conditional write: 412 if the key exists (stores without it overwrite; see docs/storage.md)
                self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, ContentType="application/json",
                                       IfNoneMatch="*")
        except StoreError as exc:
            if "PreconditionFailed" in str(exc) or "ConditionalRequestConflict" in str(exc):
                return False
            raise
        return True

    def get_bytes(self, key: str) -> bytes:
        with self._errors(key):
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()

    def get_file(self, key: str, local: Path) -> None:
        with self._errors(key):
            self.client.download_file(self.bucket, self._key(key), str(local), Config=self.transfer)

    def open_stream(self, key: str) -> Stream:
        """A streaming read of `key` (a file-like `read(n)`, `close()`); NotFound if absent."""
        with self._errors(key):
            return Stream(self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"], self, key)

    def metadata(self, key: str) -> dict[str, str]:
        """The user metadata of `key` (`put_file` records "sha256"); NotFound if absent."""
        with self._errors(key):
            return self.client.head_object(Bucket=self.bucket, Key=self._key(key)).get("Metadata", {})

    def delete_keys(self, keys: list[str]) -> None:
        """Delete these keys (absent ones are no error), 1000 per request."""
        for start in range(0, len(keys), 1000):
            objects = [{"Key": self._key(key)} for key in keys[start : start + 1000]]
            with self._errors("delete"):
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})

    def list_keys(self, prefix: str) -> list[str]:
        start = len(self._key(""))
        keys = []
        with self._errors(prefix):
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
                keys += [item["Key"][start:] for item in page.get("Contents", [])]
        return sorted(keys)

    def versioning(self) -> str | None:
        """The bucket's versioning status ('Enabled', 'Suspended', 'Off'), None if not allowed to ask."""
        try:
            with self._errors("versioning"):
                return self.client.get_bucket_versioning(Bucket=self.bucket).get("Status", "Off")
        except StoreAccessDenied:
            return None

    def create_bucket(self) -> bool:
        """Create the bucket if it is missing and turn versioning on; True if it was created."""
        created = False
        try:
            with self._errors("bucket"):
                self.client.head_bucket(Bucket=self.bucket)
        except NotFound:
            args = {}
            region = self.client.meta.region_name
            if region and region != "us-east-1":
                args["CreateBucketConfiguration"] = {"LocationConstraint": region}
            with self._errors("bucket"):
                self.client.create_bucket(Bucket=self.bucket, **args)
            created = True
        with self._errors("versioning"):
            self.client.put_bucket_versioning(Bucket=self.bucket, VersioningConfiguration={"Status": "Enabled"})
        log.info("bucket %s: %s, versioning enabled", self.bucket, "created" if created else "exists")
        return created


class Stream:
    """An object's body as it streams in: a read that stalls past the read timeout or breaks off is one
    StoreUnavailable line naming the object (botocore retries the request, never a body already flowing)."""

    def __init__(self, body: StreamingBody, backend: S3Backend, key: str) -> None:
        self.body, self.backend, self.key = body, backend, key

    def read(self, size: int | None = None) -> bytes:
        try:
            return self.body.read(None if size is None or size < 0 else size)
        except (ReadTimeoutError, ResponseStreamingError) as exc:
            raise StoreUnavailable(f"cannot reach {self.backend.endpoint} for {self.backend.url}: reading {self.key} stopped"
                                   f" ({type(exc).__name__}); check that the server is up and run the command again") from None

    def close(self) -> None:
        self.body.close()
