"""What the flows and the `ldm` command read from params.yaml, the environment and git.

Precedence for the release store: `--store` (or a flow parameter), then
$LDM_STORE, then `storage.releases` in params.yaml. Credentials are never read
here: boto3 and dvc-s3 take them from the AWS environment themselves.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ldm.storage import ReleaseStore, S3Settings, open_store
from stages.params import ClusterParams, OrchestrateParams, Params, StorageParams, load_params, to_config

STORE_ENV = "LDM_STORE"


@dataclass(frozen=True)
class Config:
    """The params a flow or a release command needs, already validated."""

    storage: StorageParams
    orchestrate: OrchestrateParams
    cluster: ClusterParams
    params: dict[str, Any] | None  # all of params.yaml with defaults filled in (None without a file)

    @property
    def s3(self) -> S3Settings:
        """The S3 client settings of the storage section."""
        return to_config(self.storage.s3, S3Settings)


def load_config(params_file: str | Path = "params.yaml") -> Config:
    """params.yaml's storage, orchestrate and cluster sections (defaults when the file is absent: a consumer's host)."""
    path = Path(params_file)
    params = load_params(path) if path.is_file() else None
    active = params or Params()
    return Config(active.storage, active.orchestrate, active.cluster, params.model_dump(mode="json") if params else None)


def store_url(config: Config, override: str | None = None, base: Path | None = None) -> str:
    """The release store in force; a relative folder is read against `base` (the workspace)."""
    url = override or os.environ.get(STORE_ENV) or config.storage.releases
    if base is not None and url and "://" not in url and not Path(url).is_absolute():
        url = str(base / url)
    return url


def release_store(config: Config, override: str | None = None, base: Path | None = None) -> ReleaseStore:
    """The release store in force, opened with the storage section's S3 settings."""
    return open_store(store_url(config, override, base), config.s3)


def git_revision(workdir: Path) -> str | None:
    """HEAD of the checkout at `workdir`, '-dirty' when tracked files changed; None outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=workdir, capture_output=True, text=True, timeout=30)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=workdir, capture_output=True,
                               text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("-dirty" if dirty else "")
