"""Class maps drawn from instance annotations (COCO polygons or RLE, YOLO-seg polygons).

A polygon-sourced `SegmentationSet` has class 0 = background and class ``label + 1`` for the annotated
label ``label``, so every pixel no object covers is background. Crowd regions (COCO ``iscrowd``) are drawn
first, as `ignore_index`; the ordinary objects are then drawn over them in annotation order, later objects on
top, because an object outlined on its own is more trustworthy than the rough outline of a crowd around it.
An object without a segmentation (a box only) makes its image unusable: what it covers is unknown, and
filling its box would teach the model rectangles, so it is an error, not a guess.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ninshiki.data.annotations import AnnotatedImage, AnnotatedSet, AnnotationError
from ninshiki.data.formats.rle import decode_segmentation
from ninshiki.data.segmentation.types import SegmentationSet

BACKGROUND_NAMES = ("background", "_background_", "__background__", "bg")


def is_background(name: str) -> bool:
    """Whether a class name means "background" (VOC writes ``background``, labelme ``_background_``)."""
    return name.strip().lower() in BACKGROUND_NAMES


def _has_segmentation(segmentation: object) -> bool:
    if isinstance(segmentation, dict):
        return True
    return isinstance(segmentation, list) and any(len(polygon) for polygon in segmentation)


def _object_name(annotation: AnnotatedImage, k: int, classes: list[str] | None) -> str:
    label = int(annotation.labels[k])
    return classes[label] if classes is not None and 0 <= label < len(classes) else f"label {label}"


def check_segmentations(annotation: AnnotatedImage, where: Path | str, classes: list[str] | None = None) -> None:
    """Raise unless every object of the image has a segmentation (polygons or RLE), without drawing any.

    Args:
        annotation: the image's objects.
        where: the image file, for the message.
        classes: the annotation's class names (object classes, no background), for the message.

    Raises:
        AnnotationError: naming the file, the object's index and its class.
    """
    segmentations = annotation.segmentations or [None] * len(annotation)
    for k, segmentation in enumerate(segmentations):
        if not _has_segmentation(segmentation):
            raise AnnotationError(
                f"{where}: object {k} ({_object_name(annotation, k, classes)}) has no segmentation (box only); "
                "its pixels are unknown, so the image cannot be used for semantic segmentation")


def require_segmentations(annotated: AnnotatedSet) -> None:
    """`check_segmentations` over a whole set: fail when it is read rather than in the middle of training."""
    for image in annotated.images:
        check_segmentations(image, annotated.path(image), annotated.classes)


def draw_label_mask(annotation: AnnotatedImage, dataset: SegmentationSet) -> np.ndarray:
    """The class map of one annotated image: value ``label + 1`` per object, 0 elsewhere, crowds ignored.

    Args:
        annotation: the image's objects, with `segmentations` (COCO polygon lists or RLE dicts).
        dataset: the `SegmentationSet` it belongs to (class 0 = background; its `ignore_index` marks crowds).

    Returns:
        (H, W) uint8 class indices into `dataset.classes`, H and W the annotated height and width.

    Raises:
        AnnotationError: an object without a segmentation, with a label outside the classes, or with a
            malformed segmentation; the message names the image file and the object's index.
    """
    where = annotation.file if annotation.file.is_absolute() else dataset.root / annotation.file
    object_classes = list(dataset.classes[1:])
    check_segmentations(annotation, where, object_classes)
    labels = np.zeros((annotation.height, annotation.width), dtype=np.uint8)   # (H, W) class indices
    if len(annotation) == 0:
        return labels
    crowd = annotation.iscrowd
    order = np.concatenate([np.flatnonzero(crowd), np.flatnonzero(~crowd)])   # crowds first, then file order
    for k in order.tolist():
        label = int(annotation.labels[k])
        if not 0 <= label + 1 < len(dataset.classes):
            raise AnnotationError(f"{where}: object {k} has label {label}, outside the {len(object_classes)} "
                                  f"object classes {object_classes}")
        try:
            mask = decode_segmentation(annotation.segmentations[k], annotation.height, annotation.width)  # (H, W)
        except (ValueError, TypeError) as error:
            raise AnnotationError(f"{where}: object {k} ({_object_name(annotation, k, object_classes)}): "
                                  f"malformed segmentation ({error})") from None
        labels[mask] = dataset.ignore_index if crowd[k] else label + 1
    return labels
