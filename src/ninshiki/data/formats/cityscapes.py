"""Cityscapes semantic labels (Cordts et al., "The Cityscapes Dataset for Semantic Urban Scene Understanding",
CVPR 2016).

Layout: ``leftImg8bit/<split>/<city>/<name>_leftImg8bit.png`` with its fine annotation
``gtFine/<split>/<city>/<name>_gtFine_labelIds.png`` (8-bit, the 34 label ids of ``cityscapesScripts``'
``labels.py``). Training and the official benchmark use 19 of them, renumbered as ``trainId`` 0..18; every
other id (unlabelled, ego vehicle, rectification border, out of roi, static, dynamic, ground, parking, rail
track, guard rail, bridge, tunnel, polegroup, caravan, trailer) is ignored (255). `cityscapes_id_map` holds
that mapping as a `SegmentationSet.id_map`. There is no background class: class 0 is road.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ninshiki.data.annotations import AnnotationError
from ninshiki.data.segmentation.types import IGNORE_INDEX, SegmentationSet, SegmentedImage

CITYSCAPES_CLASSES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
                      "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
                      "motorcycle", "bicycle")
# The official colours of the 19 train classes (cityscapesScripts labels.py), RGB.
CITYSCAPES_COLOURS = ((128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
                      (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
                      (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
                      (0, 80, 100), (0, 0, 230), (119, 11, 32))
# labelId -> trainId of the 19 evaluated classes (cityscapesScripts labels.py); every other labelId -> 255.
LABEL_TO_TRAIN_ID = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
                     26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
_IMAGE_SUFFIX = "_leftImg8bit.png"
_LABEL_SUFFIX = "_gtFine_labelIds.png"


def cityscapes_id_map() -> np.ndarray:
    """The labelId -> trainId lookup table: (65536,) uint8, 255 for every id that is not evaluated."""
    table = np.full(65536, IGNORE_INDEX, dtype=np.uint8)
    for label_id, train_id in LABEL_TO_TRAIN_ID.items():
        table[label_id] = train_id
    return table


def is_cityscapes_root(folder: Path) -> bool:
    """Whether `folder` holds ``leftImg8bit/`` and ``gtFine/``."""
    return (folder / "leftImg8bit").is_dir() and (folder / "gtFine").is_dir()


def cityscapes_splits(root: str | os.PathLike[str]) -> list[str]:
    """The splits that have both images and fine labels (e.g. ``["train", "val"]``), sorted."""
    root = Path(root)
    return sorted(p.name for p in (root / "leftImg8bit").iterdir()
                  if p.is_dir() and (root / "gtFine" / p.name).is_dir())


def read_cityscapes(root: str | os.PathLike[str], split: str) -> SegmentationSet:
    """One split of a Cityscapes folder, masks read through `cityscapes_id_map`.

    Args:
        root: the folder holding ``leftImg8bit/`` and ``gtFine/``.
        split: ``train``, ``val`` or ``test`` (the test split's public labels are all "unlabelled").

    Returns:
        The set rooted at `root`: the 19 train classes, their official colours, ignore 255.

    Raises:
        FileNotFoundError: `root` lacks ``leftImg8bit/<split>`` or ``gtFine/<split>``, or holds no images.
        AnnotationError: an image without its ``_gtFine_labelIds.png`` (both named).
    """
    root = Path(root)
    images_dir, labels_dir = root / "leftImg8bit" / split, root / "gtFine" / split
    for folder in (images_dir, labels_dir):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such folder (a Cityscapes root holds leftImg8bit/<split>/ and "
                                    "gtFine/<split>/)")
    images = sorted(p for p in images_dir.rglob(f"*{_IMAGE_SUFFIX}") if p.is_file())
    if not images:
        raise FileNotFoundError(f"{images_dir}: no *{_IMAGE_SUFFIX} images")
    items = []
    for image in images:
        relative = image.relative_to(images_dir)   # <city>/<name>_leftImg8bit.png
        label = labels_dir / relative.parent / (image.name[:-len(_IMAGE_SUFFIX)] + _LABEL_SUFFIX)
        if not label.is_file():
            raise AnnotationError(f"{image}: no label file {label}")
        items.append(SegmentedImage(file=image.relative_to(root), mask=label.relative_to(root)))
    return SegmentationSet(classes=list(CITYSCAPES_CLASSES), items=items, root=root,
                           colours=[tuple(c) for c in CITYSCAPES_COLOURS], ignore_index=IGNORE_INDEX,
                           id_map=cityscapes_id_map())
