"""params.yaml sections of storage and orchestration: where releases and DVC data go, how the flows run."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, Strict, ValidationInfo, field_validator

from ldm.storage.manifest import check_name
from ldm.storage.settings import S3Settings
from stages.params.base import Section, dataclass_section

S3Params = dataclass_section(S3Settings, "S3Params")


class StorageParams(Section):
    """Where releases and DVC data go; credentials only ever come from the AWS environment."""

    releases: str = Field("releases", description="release store: a folder, file:///path or s3://bucket/prefix")
    dvc_remote: str = Field("", description="DVC remote: s3://bucket/prefix or a folder; empty: the repo's own default remote")
    s3: S3Params = S3Params()  # type: ignore[valid-type]

    @field_validator("releases", "dvc_remote")
    @classmethod
    def _no_secrets(cls, value: str) -> str:
        if "://" in value and "@" in value.split("/")[2]:
            scheme, _, rest = value.partition("://")
            redacted = f"{scheme}://***@{rest.split('@', 1)[1]}"  # never echo a secret back
            raise ValueError(f"must not carry credentials (user:secret@), they come from the AWS environment; got {redacted}")
        if "://" in value and not value.startswith(("s3://", "file://")):
            raise ValueError("must be s3://bucket/prefix, file:///path or a folder path")
        return value


class ReleaseParams(Section):
    """What the pipeline flow releases after `dvc push`: paths of the workspace, kept as they are."""

    name: str = Field("ldm", description="release name in the store")
    paths: Annotated[tuple[str, ...], Strict(False)] = Field(("models", "metrics", "reports"), min_length=1)
    alias: str = Field("latest", description="alias moved to each new release; empty: none")

    @field_validator("name", "alias")
    @classmethod
    def _key_safe(cls, value: str, info: ValidationInfo) -> str:
        if value or info.field_name == "name":
            try:
                check_name(info.field_name, value)
            except RuntimeError as exc:
                raise ValueError(f"{exc}, got {value!r}") from None
        return value


class OrchestrateParams(Section):
    """The Prefect flows over the DVC DAG (`ldm run`, `ldm serve`, prefect.yaml)."""

    cron: str = Field("0 3 * * *", description="schedule of `ldm serve`")
    stage_timeout_s: float = Field(86400.0, gt=0.0, description="per `dvc repro -s <stage>`")
    stage_timeouts: dict[str, float] = Field({}, description="per-stage overrides of stage_timeout_s")
    push_timeout_s: float = Field(3600.0, gt=0.0, description="per `dvc push` attempt, retried when it runs out: a store "
                                  "that stops answering mid-upload stalls a write past every S3 client timeout")
    retries: int = Field(2, ge=0, le=10, description="per stage, transient failures only")
    retry_delay_s: float = Field(60.0, ge=0.0, le=3600.0)
    lock_timeout_s: float = Field(0.0, ge=0.0, description="wait for another run's workspace lock; 0: fail at once")
    push: bool = True
    task_runner: Literal["threads", "dask"] = Field(
        "threads", description="where the stage tasks run: Prefect's threads, or prefect-dask's DaskTaskRunner on "
                               "cluster.address (a temporary LocalCluster when it is empty), the stages' own tasks with them")
    release: ReleaseParams = ReleaseParams()

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise ValueError("must be a cron expression of 5 fields (minute hour day month weekday)")
        return value
