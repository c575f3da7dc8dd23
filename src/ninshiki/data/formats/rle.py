"""COCO run-length encoding (RLE) of masks, through faster-coco-eval's mask API (the C code of pycocotools).

COCO stores a mask as polygons, as uncompressed RLE (``{"size": [h, w], "counts": [runs...]}``), or as
compressed RLE (``counts`` a string). Runs go down the columns (Fortran order), starting with background.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from faster_coco_eval.core import mask as coco_mask


def to_rle(segmentation: Any, height: int, width: int) -> dict[str, Any]:
    """Compressed RLE of any COCO segmentation (polygons are unioned, as `COCO.annToRLE` does).

    A polygon of fewer than three points covers nothing (as in `masks.polygons_to_mask`), and so does an empty
    polygon list; both are dropped before the C code sees them, which would read a list whose first polygon
    has four numbers as a list of xywh boxes, and fail on an empty list or a shorter polygon.

    Raises:
        ValueError: the segmentation is neither a polygon list nor an RLE dict, a polygon has an odd number of
            coordinates, or the RLE's size is not (height, width).
    """
    if isinstance(segmentation, list):
        for k, polygon in enumerate(segmentation):
            if not isinstance(polygon, list | tuple | np.ndarray) or len(polygon) % 2:
                raise ValueError(f"polygon {k} is not a flat [x0, y0, x1, y1, ...] list of coordinate pairs")
        polygons = [[float(v) for v in polygon] for polygon in segmentation if len(polygon) >= 6]
        if not polygons:
            return encode_mask(np.zeros((height, width), dtype=bool))
        return coco_mask.merge(coco_mask.frPyObjects(polygons, height, width))
    if not isinstance(segmentation, dict) or "counts" not in segmentation or "size" not in segmentation:
        raise ValueError(f"a COCO segmentation is a polygon list or an RLE dict with size and counts, "
                         f"got {type(segmentation).__name__}")
    if [int(v) for v in segmentation["size"]] != [height, width]:
        raise ValueError(f"RLE size {list(segmentation['size'])} is not the image's [{height}, {width}]")
    if isinstance(segmentation["counts"], list):
        return coco_mask.frPyObjects(segmentation, height, width)
    return segmentation


def decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    """(height, width) bool mask of a COCO polygon list or RLE dict."""
    return coco_mask.decode(to_rle(segmentation, height, width)).astype(bool)


def encode_mask(mask: np.ndarray) -> dict[str, Any]:
    """Compressed RLE of a binary mask, ``counts`` as a str so it can go into JSON.

    Shape:
        mask: (H, W) bool or 0/1.
    """
    rle = coco_mask.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    counts = rle["counts"]
    return {"size": [int(v) for v in rle["size"]], "counts": counts.decode("ascii") if isinstance(counts, bytes)
            else counts}
