"""Where a stage `label_maps` run takes its maps and boxes from; no torch, no I/O.

Maps: `embedded` computes a seeded STAND-IN map per crop (a colour clustering,
`ldm.data.stand_in_maps`, not a segmentation); `folder` reads a PNG label map
beside each image (same stem, the format's raw values) and crops it like its
image. Boxes: `label_map` derives one box per connected region of the map (a
STAND-IN for annotated boxes, `ldm.data.layout_standin`); `coco` and
`openimages` read the dataset's box annotations and clip them to the crop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ldm.config import Config, check_literals
from ldm.data.label_maps import LABEL_MAP_FORMATS, LabelMapFormat

MapSource = Literal["embedded", "folder"]
BoxSource = Literal["label_map", "coco", "openimages"]
FolderFormat = Literal["coco-stuff", "ade20k", "ids"]
IDS_IGNORE_RAW = 255  # format "ids": raw value = class id, 255 unlabelled (so at most 255 classes)


@dataclass(frozen=True)
class LabelMapConfig(Config):
    """The map source (a stand-in or a folder) and the box source of every image."""

    section = "label_maps"

    source: MapSource = "embedded"
    n_regions: int = 8  # embedded: stand-in classes per map
    position_weight: float = 0.5  # embedded: weight of pixel position beside colour in the clustering
    seed: int = 0  # embedded: per-map seeds are hashed from this and the sample key
    folder: str = "data/source/label_maps"  # folder: label maps at the images' paths with .png
    format: FolderFormat = "coco-stuff"
    n_classes: int = 0  # format "ids": the number of classes
    boxes: BoxSource = "label_map"
    boxes_path: str = ""  # coco: instances JSON; openimages: the boxes CSV
    descriptions: str = ""  # openimages: the class-descriptions CSV ("" = classes are the MIDs seen)
    min_area: int = 64  # boxes of fewer pixels after cropping (label_map: regions) are left out
    keep_groups: bool = True  # coco iscrowd / openimages IsGroupOf boxes kept

    def __post_init__(self) -> None:
        check_literals(self, self.section)
        if self.n_regions < 1 or self.position_weight < 0 or self.min_area < 1:
            raise ValueError(f"{self.section}: n_regions and min_area must be >= 1 and position_weight >= 0, got "
                             f"{self.n_regions}, {self.min_area} and {self.position_weight}")
        if self.source == "folder" and self.format == "ids" and not 1 <= self.n_classes <= IDS_IGNORE_RAW:
            raise ValueError(f"{self.section}.folder.n_classes must be in 1..{IDS_IGNORE_RAW} with format 'ids' "
                             f"(raw value = class id, {IDS_IGNORE_RAW} = unlabelled), got {self.n_classes}")
        if self.boxes != "label_map" and self.source != "folder":
            raise ValueError(f"{self.section}.boxes.source {self.boxes!r} annotates dataset images; it needs "
                             f"{self.section}.source 'folder' (images from download.source folder)")
        if self.boxes != "label_map" and not self.boxes_path:
            raise ValueError(f"{self.section}.boxes.path: boxes from {self.boxes!r} need the annotation file's path")

    @property
    def stand_in(self) -> bool:
        """True when the maps are stand-ins computed from the images."""
        return self.source == "embedded"

    def label_format(self) -> LabelMapFormat:
        """How the folder's raw PNG values become class ids."""
        if self.format == "ids":
            return LabelMapFormat(name="ids", n_classes=self.n_classes, ignore_raw=IDS_IGNORE_RAW, offset=0)
        return LABEL_MAP_FORMATS[self.format]

    @property
    def map_classes(self) -> int:
        """How many class ids the maps can hold: the stand-in's regions, or the folder format's classes."""
        return self.n_regions if self.stand_in else self.label_format().n_classes

    def describe(self) -> dict[str, str]:
        """What the maps and boxes are, in words, for reports and pictures."""
        maps = ("STAND-IN: colour k-means regions of each crop, not a segmentation" if self.stand_in
                else f"label maps of {self.folder} ({self.label_format().name}), cropped like their images")
        boxes = {"label_map": "STAND-IN: one box per connected region of the label map",
                 "coco": f"COCO instances {self.boxes_path}, clipped to the crop",
                 "openimages": f"OpenImages boxes {self.boxes_path}, clipped to the crop"}[self.boxes]
        return {"label_maps": maps, "boxes": boxes}
