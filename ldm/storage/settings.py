"""How the S3 backend talks to a bucket: retries, timeouts, checksums, multipart sizes.

No credential lives here: boto3 takes them from the AWS chain (environment,
~/.aws, instance role), so they never reach a params file, a manifest or a log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Checksum = Literal["when_required", "when_supported"]


@dataclass(frozen=True)
class S3Settings:
    """Client settings of the S3 backend (also the DVC remote's endpoint)."""

    endpoint_url: str = ""           # "" = AWS, or $AWS_ENDPOINT_URL; MinIO: http://host:9000
    region: str = ""                 # "" = the AWS config chain
    checksum: Checksum = "when_required"  # boto3 >= 1.36 defaults to when_supported; many S3-compatible stores need when_required
    max_attempts: int = 5            # per request, botocore's standard retry mode (first try included)
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    multipart_threshold_mb: int = 64  # larger files go up and down in parts
    multipart_chunksize_mb: int = 16
    max_concurrency: int = 4         # parallel parts per transfer

    def __post_init__(self) -> None:
        scheme, _, rest = self.endpoint_url.partition("://")
        if self.endpoint_url and scheme not in ("http", "https"):
            raise ValueError(f"endpoint_url must start with http:// or https://, got {self.endpoint_url!r}")
        if "@" in rest.split("/")[0]:  # never echo a secret back
            raise ValueError(f"endpoint_url must not carry credentials, got {scheme}://***@{rest.split('@', 1)[1]}")
        if not 1 <= self.max_attempts <= 20:
            raise ValueError(f"max_attempts must be in 1..20, got {self.max_attempts}")
        for name in ("connect_timeout_s", "read_timeout_s"):
            if not 0 < getattr(self, name) <= 3600:
                raise ValueError(f"{name} must be in (0, 3600] seconds, got {getattr(self, name)}")
        if self.multipart_chunksize_mb < 5:
            raise ValueError(f"multipart_chunksize_mb must be at least 5 (the S3 minimum part size), got {self.multipart_chunksize_mb}")
        if self.multipart_threshold_mb < self.multipart_chunksize_mb:
            raise ValueError(f"multipart_threshold_mb must be at least multipart_chunksize_mb, got {self.multipart_threshold_mb}")
        if not 1 <= self.max_concurrency <= 64:
            raise ValueError(f"max_concurrency must be in 1..64, got {self.max_concurrency}")
