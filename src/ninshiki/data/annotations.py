"""Box (and mask) annotations in memory: what every detection format reads into and writes from.

One `AnnotatedImage` per image file, one `AnnotatedSet` per split. Readers of COCO, VOC and YOLO turn
their files into these; writers turn these into files; converting is reading one and writing another.
Boxes are `xyxy` floats in pixels of the image file as stored (before any EXIF rotation is applied the
annotation tools saw the same pixels), labels index `AnnotatedSet.classes`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class AnnotatedImage:
    """The objects annotated in one image file."""
    file: Path                     # the image file, absolute or relative to AnnotatedSet.root
    width: int                     # image width in pixels, as annotated
    height: int                    # image height in pixels
    boxes: np.ndarray              # (N, 4) float64, xyxy pixels
    labels: np.ndarray             # (N,) int64, index into AnnotatedSet.classes
    iscrowd: np.ndarray | None = None     # (N,) bool; COCO crowd regions (ignored by evaluation)
    difficult: np.ndarray | None = None   # (N,) bool; VOC "difficult" objects (ignored by VOC AP)
    image_id: int | None = None    # the source format's image id (COCO), kept on round trips
    areas: np.ndarray | None = None       # (N,) float; COCO "area" (mask area), used for its size ranges
    # Per object: COCO polygons (list of flat [x, y, ...] lists) or an RLE dict, or None; the
    # segmentation issue reads these. Lengths equal N when present.
    segmentations: list[object] | None = None

    def __post_init__(self) -> None:
        n = len(self.labels)
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(n, 4)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(n)
        self.iscrowd = np.zeros(n, bool) if self.iscrowd is None else np.asarray(self.iscrowd, bool).reshape(n)
        self.difficult = (np.zeros(n, bool) if self.difficult is None
                          else np.asarray(self.difficult, bool).reshape(n))
        if self.areas is not None:
            self.areas = np.asarray(self.areas, dtype=np.float64).reshape(n)
        if self.segmentations is not None and len(self.segmentations) != n:
            raise ValueError(f"{self.file}: {len(self.segmentations)} segmentations for {n} boxes")

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class AnnotatedSet:
    """One split of a detection dataset: its class names and its images."""
    classes: list[str]                          # class names; labels index this list
    images: list[AnnotatedImage]
    root: Path = Path(".")                      # folder that relative `AnnotatedImage.file` paths start from
    category_ids: list[int] | None = None       # COCO category id of each class, kept on round trips
    log: AnnotationLog = field(default_factory=lambda: AnnotationLog())

    def path(self, image: AnnotatedImage) -> Path:
        return image.file if image.file.is_absolute() else self.root / image.file

    def num_boxes(self) -> int:
        return sum(len(image) for image in self.images)


@dataclass
class AnnotationLog:
    """Problems met while reading annotations that were repaired or skipped, for the summary.

    `clipped`: boxes partly outside their image, clipped to it. `dropped`: boxes of zero or negative size,
    or with a non-finite coordinate, removed. Each entry names the file and the line or field.
    """
    clipped: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    missing_labels: list[str] = field(default_factory=list)   # images without a label file: background images

    def summary(self) -> str:
        """One line, or "" when nothing happened."""
        parts = [f"{len(items)} {what}" for items, what in (
            (self.clipped, "boxes clipped to their image"),
            (self.dropped, "empty or invalid boxes dropped"),
            (self.missing_labels, "images without a label file (read as background)")) if items]
        return "; ".join(parts)

    def extend(self, other: AnnotationLog) -> None:
        self.clipped += other.clipped
        self.dropped += other.dropped
        self.missing_labels += other.missing_labels


class AnnotationError(ValueError):
    """A malformed annotation file, or one naming an unknown class. The message names the file and where."""
