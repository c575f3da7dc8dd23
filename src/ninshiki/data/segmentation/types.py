"""Semantic segmentation data in memory: images paired with class maps, one `SegmentationSet` per split.

A class map comes from a mask PNG (index or VOC palette; `formats/masks.read_index_mask`), optionally
through `id_map` (Cityscapes' labelIds -> trainIds and the like), or is drawn from an image's COCO / YOLO
polygons (`annotation`). Either way `load_label_mask` returns class indices into `SegmentationSet.classes`
(background included, usually first) with `ignore_index` for unlabelled pixels.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ninshiki.data.annotations import AnnotatedImage, AnnotationError, AnnotationLog

IGNORE_INDEX = 255


@dataclass
class SegmentedImage:
    """One image and where its class map comes from (a mask file, or its annotated polygons)."""
    file: Path                                 # the image, absolute or relative to SegmentationSet.root
    mask: Path | None = None                   # index / palette PNG, absolute or relative to the root
    annotation: AnnotatedImage | None = None   # polygons / RLE to draw the class map from (COCO, YOLO-seg)


@dataclass
class SegmentationSet:
    """One split of a semantic segmentation dataset."""
    classes: list[str]                         # class names; a class map's values index this list
    items: list[SegmentedImage]
    root: Path = Path(".")
    colours: list[tuple[int, int, int]] | None = None   # RGB per class, for drawing (None: VOC palette)
    ignore_index: int = IGNORE_INDEX
    id_map: np.ndarray | None = None           # (65536,) uint8: stored mask value -> class index or ignore
    log: AnnotationLog = field(default_factory=lambda: AnnotationLog())

    def path(self, item: SegmentedImage) -> Path:
        return item.file if item.file.is_absolute() else self.root / item.file

    def mask_path(self, item: SegmentedImage) -> Path | None:
        if item.mask is None:
            return None
        return item.mask if item.mask.is_absolute() else self.root / item.mask


def check_label_mask(labels: np.ndarray, dataset: SegmentationSet, *, where: Path | str,
                     image_size: tuple[int, int] | None) -> np.ndarray:
    """`labels` as uint8 class indices, or an AnnotationError naming `where` (size or values wrong).

    Shape:
        labels: (H, W) integer class indices; image_size: (H, W) of the image it belongs to.
    """
    if image_size is not None and tuple(labels.shape) != tuple(image_size):
        raise AnnotationError(f"{where}: mask is {labels.shape[1]}x{labels.shape[0]} (WxH) but its image is "
                              f"{image_size[1]}x{image_size[0]}")
    values = np.unique(labels)
    bad = values[(values >= len(dataset.classes)) & (values != dataset.ignore_index)]
    if bad.size:
        raise AnnotationError(f"{where}: mask values {bad[:10].tolist()} are outside the {len(dataset.classes)} "
                              f"classes (0..{len(dataset.classes) - 1}, {dataset.ignore_index} = ignore)")
    return labels.astype(np.uint8)


def load_label_mask(dataset: SegmentationSet, item: SegmentedImage,
                    image_size: tuple[int, int] | None = None) -> np.ndarray:
    """The class map of one image: (H, W) uint8 indices into `dataset.classes`, `ignore_index` = unlabelled.

    Raises:
        AnnotationError: the mask is missing or unreadable, its size differs from `image_size`, or it holds
            values outside the class list (after `id_map`); the message names the file.
    """
    from ninshiki.data.formats.masks import read_index_mask

    path = dataset.mask_path(item)
    if path is None:
        if item.annotation is None:
            raise AnnotationError(f"{dataset.path(item)}: no mask file and no polygons to draw one from")
        from ninshiki.data.segmentation.draw import draw_label_mask  # polygons / RLE -> class map
        labels = draw_label_mask(item.annotation, dataset)
        where: Path | str = dataset.path(item)
    else:
        labels = read_index_mask(path)
        if dataset.id_map is not None:
            labels = dataset.id_map[labels]
        where = path
    return check_label_mask(labels, dataset, where=where, image_size=image_size)
