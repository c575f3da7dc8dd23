"""Annotated boxes brought into the frame of the upright image that `read_image` decodes.

`read_image` applies a file's EXIF orientation, but annotation tools disagree on whether they did: the
annotation records (data/annotations.py) say boxes are in pixels of the file as stored. The annotated
(width, height) tells which frame a box is in:

- the stored size, with an EXIF orientation other than 1: the boxes are moved by that orientation (for a
  180-degree turn, a mirror or a square image both frames have the same size, and the records' rule, stored
  pixels, decides);
- the upright (decoded) size: the boxes are already upright (tools that applied the rotation themselves);
- anything else: an `AnnotationError` naming the file and both sizes.

Instance masks follow the same rule: `DetectionDataset` rasterises a record's segmentations in the annotated
frame and turns the pixels (`orient_masks`); `upright_annotation` moves polygon vertices (`orient_points`,
exact in COCO's continuous coordinates) and turns the pixels of RLEs.

Metrics must compare detections with ground truth in the same frame: `upright_annotation` gives a record's
boxes (and segmentations) as `DetectionDataset` sees them, reading only the file's header.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ninshiki.data.annotations import AnnotatedImage, AnnotationError
from ninshiki.data.images import EXIF_ORIENTATION


def exif_orientation(path: Path) -> int:
    """The file's EXIF orientation (1-8; 1 when absent, malformed or unreadable: `read_image` reports those)."""
    try:
        with Image.open(path) as image:
            value = int(image.getexif().get(EXIF_ORIENTATION, 1) or 1)
    except Exception:  # noqa: BLE001 - any failure here is reported by read_image with its reason
        return 1
    return value if 1 <= value <= 8 else 1


def orient_points(x: Any, y: Any, orientation: int, stored: tuple[int, int]) -> tuple[Any, Any]:
    """Map continuous (x, y) coordinates of the stored pixels to the upright image, as `exif_transpose` moves
    pixels. Works on tensors, arrays and floats alike (arithmetic only).

    Args:
        x, y: coordinates in stored pixels, pixel (i, j) covering [j, j + 1) x [i, i + 1).
        orientation: the EXIF orientation 1-8.
        stored: (h, w) of the image as stored.
    """
    height, width = stored
    if orientation == 1:
        return x, y
    if orientation == 2:
        return width - x, y                 # mirrored left-right
    if orientation == 3:
        return width - x, height - y        # turned 180 degrees
    if orientation == 4:
        return x, height - y                # mirrored top-bottom
    if orientation == 5:
        return y, x                         # transposed
    if orientation == 6:
        return height - y, x                # turned 90 degrees clockwise
    if orientation == 7:
        return height - y, width - x        # transversed
    if orientation == 8:
        return y, width - x                 # turned 90 degrees anticlockwise
    raise ValueError(f"EXIF orientation must be 1-8, got {orientation}")


def orient_boxes(boxes: Tensor, orientation: int, stored: tuple[int, int]) -> Tensor:
    """Map xyxy boxes of the stored pixels to the upright image, as PIL's `exif_transpose` moves pixels.

    Args:
        boxes: (N, 4) float xyxy in stored pixels.
        orientation: the EXIF orientation 1-8.
        stored: (h, w) of the image as stored.

    Shape:
        - Output: (N, 4) float xyxy in upright pixels.
    """
    x1, y1, x2, y2 = boxes.unbind(1)
    ax, ay = orient_points(x1, y1, orientation, stored)   # where the corners (x1, y1) and (x2, y2) go
    bx, by = orient_points(x2, y2, orientation, stored)
    return torch.stack([torch.minimum(ax, bx), torch.minimum(ay, by),
                        torch.maximum(ax, bx), torch.maximum(ay, by)], dim=1)  # (N, 4)


def orient_masks(masks: Tensor, orientation: int) -> Tensor:
    """Turn (..., H, W) masks of the stored pixels upright, pixel for pixel as PIL's `exif_transpose`.

    Shape:
        - masks: (..., H, W). Output: (..., H, W), or (..., W, H) for orientations 5-8.
    """
    moves = {
        1: lambda m: m,
        2: lambda m: m.flip(-1),
        3: lambda m: m.flip(-2, -1),
        4: lambda m: m.flip(-2),
        5: lambda m: m.transpose(-2, -1),
        6: lambda m: torch.rot90(m, -1, (-2, -1)),          # clockwise
        7: lambda m: m.transpose(-2, -1).flip(-2, -1),
        8: lambda m: torch.rot90(m, 1, (-2, -1)),           # anticlockwise
    }
    if orientation not in moves:
        raise ValueError(f"EXIF orientation must be 1-8, got {orientation}")
    return moves[orientation](masks)


def orient_segmentation(segmentation: Any, orientation: int, stored: tuple[int, int]) -> Any:
    """One COCO segmentation of the stored pixels moved upright: polygon vertices by `orient_points`, RLEs
    by decoding, turning the pixels and encoding again (compressed, counts a str). None stays None.

    Raises:
        ValueError: the segmentation is neither polygons nor an RLE of the stored size (from `rle.to_rle`).
    """
    if segmentation is None or orientation == 1:
        return segmentation
    if isinstance(segmentation, list):
        moved = []
        for polygon in segmentation:
            xy = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)           # (P, 2)
            x, y = orient_points(xy[:, 0], xy[:, 1], orientation, stored)
            moved.append(np.stack([x, y], axis=1).ravel().tolist())
        return moved
    from ninshiki.data.formats.rle import decode_segmentation, encode_mask

    pixels = torch.from_numpy(decode_segmentation(segmentation, *stored))        # (h, w) bool
    return encode_mask(orient_masks(pixels, orientation).numpy())


def annotation_orientation(*, annotated: tuple[int, int], decoded: tuple[int, int], orientation: int,
                           path: Path) -> int:
    """The orientation that moves a record's annotations upright (1: they already are), by the rule of the
    module docstring.

    Args:
        annotated: (h, w) the annotation gives for the image.
        decoded: (h, w) of the image `read_image` returned.
        orientation: the file's EXIF orientation.
        path: the image file, for the error message.

    Raises:
        AnnotationError: the annotated size is neither the stored nor the upright size.
    """
    dec_h, dec_w = decoded
    stored = (dec_w, dec_h) if orientation >= 5 else (dec_h, dec_w)
    if orientation != 1 and tuple(annotated) == stored:
        return orientation
    if tuple(annotated) == (dec_h, dec_w):
        return 1
    note = f" ({stored[1]}x{stored[0]} as stored, EXIF orientation {orientation})" if orientation != 1 else ""
    raise AnnotationError(f"{path}: annotated as {annotated[1]}x{annotated[0]} pixels but the image is "
                          f"{dec_w}x{dec_h}{note}; the annotation belongs to another image or a resized copy")


def upright_boxes(boxes: Tensor, *, annotated: tuple[int, int], decoded: tuple[int, int], orientation: int,
                  path: Path) -> Tensor:
    """Boxes in the decoded (upright) image's pixels, by the rule of the module docstring.

    Args:
        boxes: (N, 4) float xyxy as annotated.
        annotated, decoded, orientation, path: as `annotation_orientation`.

    Raises:
        AnnotationError: the annotated size is neither the stored nor the upright size.
    """
    turn = annotation_orientation(annotated=annotated, decoded=decoded, orientation=orientation, path=path)
    return boxes if turn == 1 else orient_boxes(boxes, turn, tuple(annotated))


def upright_annotation(image: AnnotatedImage, path: Path) -> AnnotatedImage:
    """`image` in the frame of the upright decoded file: boxes, segmentations, width and height as
    `DetectionDataset` uses them (so detections mapped back by a `Letterbox` meet their ground truth). Only
    the header is read.

    The record itself is returned when the file has no EXIF rotation or its header cannot be read (the
    loader reports that file). Areas are kept (a turn keeps them).

    Raises:
        AnnotationError: as `upright_boxes`, or a segmentation that is not polygons or an RLE of the
            annotated size (naming the file and the object).
    """
    try:
        with Image.open(path) as opened:
            stored_w, stored_h = opened.size
    except Exception:  # noqa: BLE001 - unreadable files are reported by the loader, with their reason
        return image
    orientation = exif_orientation(path)
    if orientation == 1:
        return image
    decoded = (stored_w, stored_h) if orientation >= 5 else (stored_h, stored_w)   # (h, w) upright
    annotated = (image.height, image.width)
    turn = annotation_orientation(annotated=annotated, decoded=decoded, orientation=orientation, path=path)
    if turn == 1:
        return image
    boxes = orient_boxes(torch.from_numpy(image.boxes), turn, annotated)
    segmentations = image.segmentations
    if segmentations is not None:
        segmentations = [_moved(seg, turn, annotated, path, j) for j, seg in enumerate(segmentations)]
    return replace(image, boxes=boxes.numpy(), width=decoded[1], height=decoded[0], segmentations=segmentations)


def _moved(segmentation: Any, turn: int, stored: tuple[int, int], path: Path, index: int) -> Any:
    try:
        return orient_segmentation(segmentation, turn, stored)
    except ValueError as err:
        raise AnnotationError(f"{path}: object {index}: {err}") from None
