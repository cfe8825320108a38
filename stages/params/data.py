"""params.yaml sections of the data stages: the shared `data` settings, `download`, `degrade`, `masks` and `label_maps`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from ldm.data.policies import OnCorrupt
from ldm.degradation.variants import Scale, VariantName
from ldm.label_maps.config import IDS_IGNORE_RAW, BoxSource, FolderFormat, LabelMapConfig, MapSource
from ldm.masks.config import MaskConfig, check_proportions
from stages.params.base import Section


class DataParams(Section):
    """Shared data settings: the image size every stage sees and the shard layout."""

    resolution: int = Field(64, ge=16, le=1024, description="crop side in pixels")
    shard_size: int = Field(500, ge=1, le=100_000, description="samples per shard")
    on_corrupt: OnCorrupt = Field("fail", description="a corrupt shard stops the stage (fail) or is set aside"
                                  " and listed in its report (skip)")

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


class LabelMapFolderParams(Section):
    """source folder: a PNG label map per image, at the image's path below download.folder.path, with .png."""

    path: str = "data/source/label_maps"
    format: FolderFormat = Field("coco-stuff", description="coco-stuff (182 classes, 255 unlabelled) | ade20k "
                                 "(150 classes, 0 unlabelled) | ids (raw value = id, 255 unlabelled)")
    n_classes: int = Field(0, ge=0, le=IDS_IGNORE_RAW, description="format ids: the number of classes")


class LabelMapBoxesParams(Section):
    """Where each image's boxes come from."""

    source: BoxSource = Field("label_map", description="label_map (a STAND-IN: a box per region) | coco | openimages")
    path: str = Field("", description="coco: the instances JSON; openimages: the boxes CSV")
    descriptions: str = Field("", description="openimages: the class-descriptions CSV; empty: classes are the MIDs")
    min_area: int = Field(64, ge=1, description="px at the crop's resolution; smaller boxes (regions) are left out")
    keep_groups: bool = Field(True, description="keep COCO iscrowd / OpenImages IsGroupOf boxes")


class LabelMapsParams(Section):
    """Stage `label_maps`: a label map and a layout beside each image (Sec. 4.3.1, 4.3.2)."""

    source: MapSource = Field("embedded", description="embedded: a seeded STAND-IN map per crop | folder")
    n_regions: int = Field(8, ge=2, le=256, description="embedded: stand-in classes per map")
    position_weight: float = Field(0.1, ge=0.0, le=10.0, description="embedded: pixel position beside colour")
    seed: int = Field(0, ge=0, description="per-map seeds are hashed from this and the sample key")
    folder: LabelMapFolderParams = LabelMapFolderParams()
    boxes: LabelMapBoxesParams = LabelMapBoxesParams()
    workers: int = Field(2, ge=1, le=64, description="processes, one shard each; the output does not depend on it")
    runtime = frozenset({"workers"})
    grid_images: int = Field(8, ge=1, le=256, description="val rows image | label map | boxes in reports/label_maps.png")

    @model_validator(mode="after")
    def _consistent(self) -> LabelMapsParams:
        self.config()  # the library's own checks (folder format classes, box sources)
        return self

    def config(self) -> LabelMapConfig:
        """The library's configuration of the maps and boxes."""
        return LabelMapConfig(source=self.source, n_regions=self.n_regions, position_weight=self.position_weight,
                              seed=self.seed, folder=self.folder.path, format=self.folder.format,
                              n_classes=self.folder.n_classes, boxes=self.boxes.source, boxes_path=self.boxes.path,
                              descriptions=self.boxes.descriptions, min_area=self.boxes.min_area,
                              keep_groups=self.boxes.keep_groups)
