"""Typed, strict loading of params.yaml: one frozen section model per stage.

Every stage calls `load_params(path)` before it does any work, so a typo, a wrong
type or an out-of-range value stops the run with one line naming the key, the
value and what is allowed. `ldm params check` runs the same validation alone.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (BaseModel, ConfigDict, Field, Strict, ValidationError, ValidationInfo, create_model, field_validator,
                      model_validator)


class ParamsError(ValueError):
    """params.yaml is missing, unreadable or invalid; the message says what to fix."""


class Section(BaseModel):
    """A frozen section of params.yaml that rejects unknown keys and silent coercions."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def dataclass_section(config: type, name: str, defaults: Any = None) -> type[Section]:
    """A strict params section mirroring a frozen config dataclass of `ldm/`.

    The dataclass stays the one definition of the fields; the defaults are its own,
    or those of the `defaults` instance (e.g. a CPU recipe). Its `__post_init__`
    checks run at load time and their message is reported like any other.
    `to_config(section, config)` builds the dataclass.
    """
    hints = typing.get_type_hints(config)
    fields: dict[str, Any] = {}
    for field in dataclasses.fields(config):
        kind = hints[field.name]
        if typing.get_origin(kind) is tuple:
            kind = Annotated[kind, Strict(False)]  # YAML has lists, the dataclass tuples
        if defaults is not None:
            default = getattr(defaults, field.name)
        elif field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = ...
        fields[field.name] = (kind, default)

    def check(section: Section) -> Section:
        try:
            config(**section.model_dump())
        except (TypeError, ValueError) as exc:
            raise ValueError(str(exc)) from None
        return section

    validators = {"_check": model_validator(mode="after")(check)}
    return create_model(name, __base__=Section, __validators__=validators, **fields)


def to_config(section: Section, config: type) -> Any:
    """The `ldm` config dataclass that a `dataclass_section` section describes."""
    return config(**section.model_dump())


# ----------------------------------------------------------------------------- data


class DataParams(Section):
    """Shared data settings: the image size every stage sees and the shard layout."""

    resolution: int = Field(64, ge=16, le=1024, description="crop side in pixels")
    shard_size: int = Field(500, ge=1, le=100_000, description="samples per shard")

    @field_validator("resolution")
    @classmethod
    def _multiple_of_8(cls, value: int) -> int:
        if value % 8:
            raise ValueError("must be a multiple of 8 (autoencoders downsample by powers of two)")
        return value


# ------------------------------------------------------------------------- download


class EmbeddedParams(Section):
    """The offline default: photographs that ship inside scikit-image and scikit-learn."""

    train_crops: int = Field(1200, ge=1, le=100_000)
    val_crops: int = Field(240, ge=1, le=100_000)
    val_fraction: float = Field(0.25, gt=0.0, lt=0.5, description="share of each photo's long side kept for val")
    max_scale: float = Field(4.0, ge=1.0, le=16.0, description="largest crop side as a multiple of the resolution")


class FolderParams(Section):
    """An image folder: one subfolder per class, optional captions.jsonl at its root."""

    path: str = "data/source/images"
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    captions: str = "captions.jsonl"


class ManifestParams(Section):
    """A JSON-lines list of {url, sha256[, class][, caption]} to download and verify."""

    path: str = "data/source/manifest.jsonl"
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    workers: int = Field(8, ge=1, le=64)
    retries: int = Field(3, ge=0, le=20)
    timeout_s: float = Field(60.0, gt=0.0, le=3600.0)


class DownloadParams(Section):
    """Stage `download`: which source to read and what to do with bad input."""

    source: Literal["embedded", "folder", "manifest"] = "embedded"
    seed: int = Field(0, ge=0)
    on_bad_input: Literal["skip", "fail"] = "skip"
    workers: int = Field(2, ge=1, le=64, description="processes decoding folder or manifest images")
    embedded: EmbeddedParams = EmbeddedParams()
    folder: FolderParams = FolderParams()
    manifest: ManifestParams = ManifestParams()


# -------------------------------------------------------------------------- degrade


class DegradeParams(Section):
    """Stage `degrade`: LR/HR pairs for super-resolution (Sec. C.7.1)."""

    variant: Literal["bsr", "bsr_light", "bicubic"] = "bsr_light"
    scale: Literal[2, 3, 4, 8] = 4
    degradations_per_image: int = Field(1, ge=1, le=64)
    seed: int = Field(0, ge=0)
    workers: int = Field(2, ge=1, le=64, description="processes, one shard each; the output does not depend on it")
    grid_pairs: int = Field(16, ge=1, le=256, description="HR | LR pairs in reports/degrade.png")


# ------------------------------------------------------------ storage, orchestration


from ldm.storage.manifest import check_name  # noqa: E402  (no I/O at import)
from ldm.storage.settings import S3Settings  # noqa: E402

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
    retries: int = Field(2, ge=0, le=10, description="per stage, transient failures only")
    retry_delay_s: float = Field(60.0, ge=0.0, le=3600.0)
    lock_timeout_s: float = Field(0.0, ge=0.0, description="wait for another run's workspace lock; 0: fail at once")
    push: bool = True
    release: ReleaseParams = ReleaseParams()

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise ValueError("must be a cron expression of 5 fields (minute hour day month weekday)")
        return value


# --------------------------------------------------------------------------- params


from stages.training_params import (AutoencoderParams, CacheLatentsParams, EvaluateParams,  # noqa: E402
                                     TrainAutoencoderParams, TrainLDMParams, TrainSRParams)  # noqa: E402  (they build on Section)


class Params(Section):
    """All of params.yaml."""

    data: DataParams = DataParams()
    download: DownloadParams = DownloadParams()
    degrade: DegradeParams = DegradeParams()
    autoencoder: AutoencoderParams = AutoencoderParams()
    train_autoencoder: TrainAutoencoderParams = TrainAutoencoderParams()
    cache_latents: CacheLatentsParams = CacheLatentsParams()
    train_ldm: TrainLDMParams = TrainLDMParams()
    train_sr: TrainSRParams = TrainSRParams()
    evaluate: EvaluateParams = EvaluateParams()
    storage: StorageParams = StorageParams()
    orchestrate: OrchestrateParams = OrchestrateParams()


def _describe(error: dict[str, Any], model: type[BaseModel]) -> str:
    """One readable line for one pydantic error: key, value, what is allowed."""
    key = ".".join(str(part) for part in error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, error["loc"][:-1])
        return f"{key}: unknown key; allowed here: {', '.join(allowed)}"
    value = error.get("input")
    message = error["msg"]
    if kind == "literal_error":
        message = "must be one of " + message.removeprefix("Input should be ")
    elif kind == "value_error" and "got " in message:
        return f"{key}: {message.replace('Value error, ', '')}"
    else:
        message = message.replace("Input should be", "must be").replace("Value error, ", "")
    return f"{key}: {message}, got {value!r}"


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """The field names of the section at `loc` (for the unknown-key message)."""
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None or not isinstance(field.annotation, type) or not issubclass(field.annotation, BaseModel):
            return sorted(model.model_fields)
        model = field.annotation
    return sorted(model.model_fields)


def parse_params(raw: Any, source: str = "params.yaml") -> Params:
    """Validate an already-parsed mapping; raise ParamsError listing every problem."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: the top level must be a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{source}: {_describe(err, Params)}" for err in exc.errors()]
        raise ParamsError("\n".join(lines)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path}: no such file; run from the project root or pass --params") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    return parse_params(raw, str(path))


def params_hash(section: BaseModel) -> str:
    """sha256 of a section's canonical JSON: the lineage key of a stage's settings."""
    text = json.dumps(section.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
