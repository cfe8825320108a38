"""params.yaml sections of the data stages: the shared `data` settings, `download`, `degrade` and `masks`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from ldm.degradation.variants import Scale, VariantName
from ldm.masks.config import MaskConfig, check_proportions
from stages.params.base import Section


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
    runtime = frozenset({"workers"})
    embedded: EmbeddedParams = EmbeddedParams()
    folder: FolderParams = FolderParams()
    manifest: ManifestParams = ManifestParams()


class DegradeParams(Section):
    """Stage `degrade`: LR/HR pairs for super-resolution (Sec. C.7.1)."""

    variant: VariantName = "bsr_light"
    scale: Scale = 4
    degradations_per_image: int = Field(1, ge=1, le=64)
    seed: int = Field(0, ge=0)
    workers: int = Field(2, ge=1, le=64, description="processes, one shard each; the output does not depend on it")
    runtime = frozenset({"workers"})
    grid_pairs: int = Field(16, ge=1, le=256, description="HR | LR pairs in reports/degrade.png")


class MaskProportionsParams(Section):
    """The share of each kind of mask; non-negative, summing to 1."""

    thick: float = Field(0.3, ge=0.0, le=1.0, description="few wide, long strokes (LaMa's random_thick)")
    medium: float = Field(0.3, ge=0.0, le=1.0, description="4-5 strokes of half the width (random_medium)")
    thin: float = Field(0.2, ge=0.0, le=1.0, description="4-50 narrow, short strokes (random_thin)")
    box: float = Field(0.2, ge=0.0, le=1.0, description="1-3 axis-aligned boxes")

    @model_validator(mode="after")
    def _sums_to_one(self) -> MaskProportionsParams:
        check_proportions(self.model_dump())
        return self


class MasksParams(Section):
    """Stage `masks`: a seeded large mask per image for inpainting (LaMa's generator, D.2.2)."""

    proportions: MaskProportionsParams = MaskProportionsParams()
    min_coverage: float = Field(0.05, ge=0.0, lt=1.0, description="least fraction of the image a mask hides")
    max_coverage: float = Field(0.5, gt=0.0, le=1.0, description="most fraction hidden (LaMa's max_tamper_area)")
    attempts: int = Field(10, ge=1, le=1000, description="draws of the kind before the last is fitted to a bound")
    seed: int = Field(0, ge=0, description="per-sample seeds are hashed from this and the sample key")
    workers: int = Field(2, ge=1, le=64, description="processes, one shard each; the output does not depend on it")
    runtime = frozenset({"workers"})
    grid_images: int = Field(12, ge=1, le=256, description="val rows image | mask | masked in reports/masks.png")

    @model_validator(mode="after")
    def _bounds(self) -> MasksParams:
        self.config()  # the generator's own checks (coverage bounds in order)
        return self

    def config(self) -> MaskConfig:
        """The generator's configuration."""
        return MaskConfig(proportions=self.proportions.model_dump(), min_coverage=self.min_coverage,
                          max_coverage=self.max_coverage, attempts=self.attempts)


ADDRESS_ENV = "LDM_CLUSTER_ADDRESS"  # set by the pipeline flow on a Dask worker: its scheduler, over cluster.address


class ClusterParams(Section):
    """Where the data stages run their tasks: the local process pool, or a Dask cluster (ldm/parallel.py)."""

    address: str = Field("", description='"" = local processes; a Dask scheduler (tcp://host:8786) or its scheduler file')
    timeout_s: float = Field(30.0, gt=0.0, le=3600.0, description="seconds to wait for the scheduler")
    retries: int = Field(2, ge=0, le=20, description="more attempts of a task that failed on I/O, the network or a lost worker")
