"""Segmentation masks on disk and as COCO polygons.

Two PNG forms: an *index* mask (mode ``L``, or ``I;16`` when ids pass 255) whose pixel values are class or
instance ids, and the PASCAL VOC *palette* mask (mode ``P``) whose values are the same ids shown through the
VOC colour map (``SegmentationClass``, ``SegmentationObject``; 255 is VOC's "void" border). Both read back as
the ids, never as colours.

COCO polygons are in continuous pixel coordinates, pixel ``(x, y)`` covering ``[x, x + 1) x [y, y + 1)``.
`mask_to_polygons` traces each part of a mask a quarter pixel inside the edges of its boundary pixels
(the contour of the mask upsampled twice), and bridges each hole into its outer boundary with a zero-width
cut ("keyhole"), because COCO unions the polygons of one object and so cannot express a hole otherwise.
Rasterisers decide by pixel centres, so these outlines give back the very same pixels, both with
pycocotools and with `polygons_to_mask` (checked in the tests); a plain contour through the boundary
pixels' centres would lose a rim of boundary pixels in pycocotools (a third of a small disc).
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from ninshiki.data.annotations import AnnotationError
from ninshiki.io import atomic_path

VOC_VOID = 255  # VOC's "don't care" value (object borders, unlabelled pixels)
_FIXED_POINT_BITS = 3  # polygon vertices are on a quarter-pixel grid: 3 fractional bits hold them exactly


def _voc_colour_map() -> tuple[int, ...]:
    palette: list[int] = []
    for index in range(256):
        r = g = b = 0
        code = index
        for shift in range(7, -1, -1):  # the bits of the index, spread over the high bits of r, g, b
            r |= ((code >> 0) & 1) << shift
            g |= ((code >> 1) & 1) << shift
            b |= ((code >> 2) & 1) << shift
            code >>= 3
        palette += [r, g, b]
    return tuple(palette)


_VOC_PALETTE = _voc_colour_map()  # an immutable constant, computed once


def voc_palette() -> list[int]:
    """The PASCAL VOC colour map as PIL wants it: 256 RGB triples flattened to 768 ints.

    Index 0 is black (background), 1 dark red (aeroplane), ..., 255 is (224, 224, 192) (void).
    """
    return list(_VOC_PALETTE)


def _check_mask(path: str | os.PathLike[str], mask: np.ndarray, *, max_value: int) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"{path}: a mask must be (H, W), got shape {mask.shape}")
    if not np.issubdtype(mask.dtype, np.integer) and mask.dtype != bool:
        raise ValueError(f"{path}: a mask must hold integer ids, got dtype {mask.dtype}")
    if mask.size and (int(mask.min()) < 0 or int(mask.max()) > max_value):
        raise ValueError(f"{path}: mask ids must lie in 0..{max_value}, got {int(mask.min())}..{int(mask.max())}")
    return mask


def index_mask_image(mask: np.ndarray) -> Image.Image:
    """Ids as a grey PIL image: ``L`` when every id fits 8 bits, else ``I;16``.

    Shape:
        mask: (H, W) integer ids in 0..65535.
    """
    mask = _check_mask("index mask", mask, max_value=65535)
    if mask.size == 0 or int(mask.max()) <= 255:
        return Image.fromarray(mask.astype(np.uint8))
    return Image.fromarray(mask.astype(np.uint16))


def palette_mask_image(mask: np.ndarray) -> Image.Image:
    """Ids as a VOC palette PIL image (mode ``P``).

    Shape:
        mask: (H, W) integer ids in 0..255.
    """
    mask = _check_mask("palette mask", mask, max_value=255)
    image = Image.fromarray(mask.astype(np.uint8))  # "L"; putpalette makes it "P" with the same values
    image.putpalette(_VOC_PALETTE)
    return image


def write_index_mask(path: str | os.PathLike[str], mask: np.ndarray) -> None:
    """Write ids as a grey PNG, atomically: 8-bit when every id fits, else 16-bit (``I;16``).

    Shape:
        mask: (H, W) integer ids in 0..65535 (0 = background or "no instance").
    """
    _check_mask(path, mask, max_value=65535)
    image = index_mask_image(mask)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def write_palette_mask(path: str | os.PathLike[str], mask: np.ndarray) -> None:
    """Write ids as a VOC palette PNG (mode ``P``, VOC colour map), atomically.

    Shape:
        mask: (H, W) integer ids in 0..255.
    """
    _check_mask(path, mask, max_value=255)
    image = palette_mask_image(mask)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def read_index_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an index or palette PNG mask as its ids (not its colours).

    Returns:
        (H, W) uint8 for 8-bit and palette masks, uint16 for 16-bit ones.

    Raises:
        AnnotationError: the file is missing, unreadable, or a colour image (RGB masks hold no ids).
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
    except (OSError, UnidentifiedImageError) as error:
        raise AnnotationError(f"{path}: cannot read the mask ({error})") from error
    if image.mode in ("L", "P"):
        return np.asarray(image, dtype=np.uint8)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        values = np.asarray(image)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise AnnotationError(f"{path}: mask ids outside 0..65535")
        return values.astype(np.uint16)
    raise AnnotationError(f"{path}: a {image.mode} image is not an index mask; expected a grey (L, I;16) or "
                          "palette (P) PNG whose values are ids")


def _bridge_holes(outer: np.ndarray, holes: list[np.ndarray]) -> np.ndarray:
    """Join each hole to the outline by a zero-width cut, nearest hole first.

    Taking the hole nearest to the growing outline first keeps every cut from crossing a hole not yet
    joined (such a hole would have been nearer). The hole's opposite winding leaves it unfilled.
    """
    poly, holes = outer, list(holes)
    while holes:
        best = (np.inf, 0, 0, 0)
        for h, hole in enumerate(holes):
            d2 = ((poly[:, None, :] - hole[None, :, :]) ** 2).sum(-1)  # (P, Q) squared distances
            i, j = np.unravel_index(int(np.argmin(d2)), d2.shape)
            if d2[i, j] < best[0]:
                best = (d2[i, j], h, int(i), int(j))
        _, h, i, j = best
        hole = holes.pop(h)
        poly = np.concatenate([poly[:i + 1], hole[j:], hole[:j + 1], poly[i:]])
    return poly


def mask_to_polygons(mask: np.ndarray, *, offset: tuple[int, int] = (0, 0)) -> list[list[float]]:
    """COCO polygons of a binary mask: one flat ``[x0, y0, x1, y1, ...]`` list per connected part.

    Holes are joined to their part by keyhole cuts, so the union of the polygons is exactly the mask.

    Args:
        mask: the mask, or a crop of a larger one.
        offset: (x, y) of the crop's top-left pixel in the larger mask, added to every vertex.

    Shape:
        mask: (H, W) bool or 0/1.
    """
    # cv2's contour runs through the centres of the boundary sub-pixels of the twice-upsampled mask:
    # (u + 0.5) / 2 in COCO coordinates, a quarter pixel inside the original pixels' edges.
    up = np.kron(np.asarray(mask, dtype=np.uint8) != 0, np.ones((2, 2), np.uint8)).astype(np.uint8)  # (2H, 2W)
    contours, hierarchy = cv2.findContours(up, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return []
    parents = hierarchy[0][:, 3]
    polygons = []
    for index, contour in enumerate(contours):
        if parents[index] != -1:
            continue
        holes = [contours[h].reshape(-1, 2) for h in np.flatnonzero(parents == index)]
        poly = _bridge_holes(contour.reshape(-1, 2), holes)  # (P, 2) upsampled pixel indices
        polygons.append(((poly.astype(np.float64) + 0.5) / 2.0 + offset).ravel().tolist())
    return polygons


def polygons_to_mask(polygons: list[list[float]], height: int, width: int) -> np.ndarray:
    """Rasterise COCO polygons (their union) to an (H, W) bool mask, as pycocotools does for these outlines.

    A polygon of fewer than three points covers nothing.
    """
    out = np.zeros((height, width), np.uint8)
    scale = 1 << _FIXED_POINT_BITS
    for polygon in polygons:
        points = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)  # (P, 2) xy, continuous coordinates
        if len(points) < 3:
            continue
        # cv2 puts pixel centres at integers, COCO at +0.5; each polygon filled alone = COCO's union
        fixed = np.round((points - 0.5) * scale).astype(np.int32)
        cv2.fillPoly(out, [fixed], 1, lineType=cv2.LINE_8, shift=_FIXED_POINT_BITS)
    return out.astype(bool)
