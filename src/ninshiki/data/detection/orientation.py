"""Annotated boxes brought into the frame of the upright image that `read_image` decodes.

`read_image` applies a file's EXIF orientation, but annotation tools disagree on whether they did: the
annotation records (data/annotations.py) say boxes are in pixels of the file as stored. The annotated
(width, height) tells which frame a box is in:

- the stored size, with an EXIF orientation other than 1: the boxes are moved by that orientation (for a
  180-degree turn, a mirror or a square image both frames have the same size, and the records' rule, stored
  pixels, decides);
- the upright (decoded) size: the boxes are already upright (tools that applied the rotation themselves);
- anything else: an `AnnotationError` naming the file and both sizes.

Metrics must compare detections with ground truth in the same frame: `upright_annotation` gives a record's
boxes as `DetectionDataset` sees them, reading only the file's header.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

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


def orient_boxes(boxes: Tensor, orientation: int, stored: tuple[int, int]) -> Tensor:
    """Map xyxy boxes of the stored pixels to the upright image, as PIL's `exif_transpose` moves pixels.

    Args:
        boxes: (N, 4) float xyxy in stored pixels.
        orientation: the EXIF orientation 1-8.
        stored: (h, w) of the image as stored.

    Shape:
        - Output: (N, 4) float xyxy in upright pixels.
    """
    height, width = stored
    x1, y1, x2, y2 = boxes.unbind(1)
    corners = {  # where the corners (x1, y1) and (x2, y2) go, as (x, y) each
        1: ((x1, y1), (x2, y2)),
        2: ((width - x1, y1), (width - x2, y2)),                  # mirrored left-right
        3: ((width - x1, height - y1), (width - x2, height - y2)),  # turned 180 degrees
        4: ((x1, height - y1), (x2, height - y2)),                # mirrored top-bottom
        5: ((y1, x1), (y2, x2)),                                  # transposed
        6: ((height - y1, x1), (height - y2, x2)),                # turned 90 degrees clockwise
        7: ((height - y1, width - x1), (height - y2, width - x2)),  # transversed
        8: ((y1, width - x1), (y2, width - x2)),                  # turned 90 degrees anticlockwise
    }[orientation]
    (ax, ay), (bx, by) = corners
    return torch.stack([torch.minimum(ax, bx), torch.minimum(ay, by),
                        torch.maximum(ax, bx), torch.maximum(ay, by)], dim=1)  # (N, 4)


def upright_boxes(boxes: Tensor, *, annotated: tuple[int, int], decoded: tuple[int, int], orientation: int,
                  path: Path) -> Tensor:
    """Boxes in the decoded (upright) image's pixels, by the rule of the module docstring.

    Args:
        boxes: (N, 4) float xyxy as annotated.
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
        return orient_boxes(boxes, orientation, stored)
    if tuple(annotated) == (dec_h, dec_w):
        return boxes
    note = f" ({stored[1]}x{stored[0]} as stored, EXIF orientation {orientation})" if orientation != 1 else ""
    raise AnnotationError(f"{path}: annotated as {annotated[1]}x{annotated[0]} pixels but the image is "
                          f"{dec_w}x{dec_h}{note}; the annotation belongs to another image or a resized copy")


def upright_annotation(image: AnnotatedImage, path: Path) -> AnnotatedImage:
    """`image` in the frame of the upright decoded file: boxes, width and height as `DetectionDataset` uses
    them (so detections mapped back by a `Letterbox` meet their ground truth). Only the header is read.

    The record itself is returned when the file has no EXIF rotation or its header cannot be read (the
    loader reports that file). Areas are kept (a turn keeps them); segmentations are not moved.

    Raises:
        AnnotationError: as `upright_boxes`.
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
    boxes = upright_boxes(torch.from_numpy(image.boxes), annotated=(image.height, image.width), decoded=decoded,
                          orientation=orientation, path=path)
    return replace(image, boxes=boxes.numpy(), width=decoded[1], height=decoded[0])
