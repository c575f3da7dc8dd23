"""COCO RLE helpers (over faster-coco-eval) checked against pycocotools' mask API, the reference."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from pycocotools import mask as coco_mask

from ninshiki.data.formats.rle import decode_segmentation, encode_mask, to_rle

# pycocotools' RLE objects predate NumPy 2's __array__(copy=...) protocol; harmless here
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


def reference(segmentation: object, height: int, width: int) -> np.ndarray:
    """pycocotools' reading of a segmentation, as `COCO.annToMask` does it."""
    if isinstance(segmentation, list):
        rle = coco_mask.merge(coco_mask.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation["counts"], list):
        rle = coco_mask.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    return coco_mask.decode(rle).astype(bool)


def random_polygons(rng: np.random.Generator, height: int, width: int) -> list[list[float]]:
    """1..3 random polygons of 3..8 vertices, some reaching past the image edge, non-integer vertices."""
    found = []
    for _ in range(int(rng.integers(1, 4))):
        points = rng.uniform([-3, -3], [width + 3, height + 3], (int(rng.integers(3, 9)), 2))
        found.append(points.ravel().tolist())
    return found


def random_mask(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    for _ in range(3):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        cv2.circle(mask, centre, int(rng.integers(1, 9)), int(rng.integers(0, 2)), -1)
    return mask.astype(bool)


def test_polygons_decode_and_encode_as_pycocotools_does() -> None:
    rng = np.random.default_rng(0)
    for _ in range(40):
        height, width = (int(v) for v in rng.integers(5, 40, 2))
        polygons = random_polygons(rng, height, width)
        expected = reference(polygons, height, width)
        np.testing.assert_array_equal(decode_segmentation(polygons, height, width), expected)
        rle = to_rle(polygons, height, width)
        assert rle["size"] == [height, width]
        assert rle["counts"] == coco_mask.merge(coco_mask.frPyObjects(polygons, height, width))["counts"]


def test_uncompressed_and_compressed_rle() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        height, width = (int(v) for v in rng.integers(3, 30, 2))
        mask = random_mask(rng, height, width)
        flat = mask.ravel(order="F").astype(np.int8)                   # COCO's runs go down the columns
        changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
        counts = np.diff(np.concatenate([[0], changes])).tolist()      # starts with a background run
        uncompressed = {"size": [height, width], "counts": counts}
        np.testing.assert_array_equal(reference(uncompressed, height, width), mask)   # the test's own RLE is right
        np.testing.assert_array_equal(decode_segmentation(uncompressed, height, width), mask)
        compressed = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
        for counts_form in (compressed["counts"], compressed["counts"].decode("ascii")):   # bytes, or str from JSON
            rle = {"size": [height, width], "counts": counts_form}
            np.testing.assert_array_equal(decode_segmentation(rle, height, width), mask)


def test_encode_mask_matches_pycocotools_and_fits_json() -> None:
    rng = np.random.default_rng(2)
    for _ in range(20):
        height, width = (int(v) for v in rng.integers(1, 30, 2))
        mask = random_mask(rng, height, width)
        rle = encode_mask(mask)
        expected = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert rle == {"size": [height, width], "counts": expected["counts"].decode("ascii")}
        back = json.loads(json.dumps(rle))
        np.testing.assert_array_equal(decode_segmentation(back, height, width), mask)
        np.testing.assert_array_equal(coco_mask.decode({**back, "counts": back["counts"].encode()}), mask)
    assert encode_mask(np.zeros((2, 3), bool)) == {"size": [2, 3], "counts": "6"}   # one background run of 6


def test_degenerate_polygons_cover_nothing() -> None:
    triangle = [1.0, 1.0, 6.0, 1.0, 6.0, 6.0]
    np.testing.assert_array_equal(decode_segmentation([], 4, 5), np.zeros((4, 5), bool))
    # the C code would read a 4-number "polygon" as an xywh box, and fail on shorter ones
    assert not decode_segmentation([[1.0, 1.0, 5.0, 5.0]], 8, 8).any()
    np.testing.assert_array_equal(decode_segmentation([triangle, [1.0, 2.0], []], 8, 8), reference([triangle], 8, 8))
    assert decode_segmentation([[1.0, 2.0]], 8, 8).shape == (8, 8)


@pytest.mark.parametrize("segmentation, message", [
    ({"size": [4, 6], "counts": [24]}, r"RLE size \[4, 6\] is not the image's \[4, 5\]"),
    ({"size": [4, 5], "counts": [6, 2]}, "RLE"),                        # runs that do not cover the image
    ({"size": [4, 5], "counts": "zzz"}, "RLE"),
    ("polygon", "polygon list or an RLE dict"),
    ({"counts": [20]}, "polygon list or an RLE dict"),
    ([[1.0, 1.0, 5.0, 1.0, 5.0]], "polygon 0 is not a flat"),
])
def test_malformed_segmentations(segmentation: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_segmentation(segmentation, 4, 5)
