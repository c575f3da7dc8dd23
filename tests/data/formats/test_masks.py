"""Mask PNGs (index, 16-bit, VOC palette) and COCO polygons of masks, checked against pycocotools."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from ninshiki.data.annotations import AnnotationError
from ninshiki.data.formats import masks

# pycocotools' RLE objects predate NumPy 2's __array__(copy=...) protocol; harmless here
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


def coco_rasterise(polygons: list[list[float]], height: int, width: int) -> np.ndarray:
    """pycocotools' reading of one object's polygons (their union), the reference for COCO masks."""
    if not polygons:
        return np.zeros((height, width), bool)
    return coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects(polygons, height, width))).astype(bool)


def random_masks(count: int, seed: int = 0, size: int = 64) -> list[np.ndarray]:
    """Discs and triangles of 1..25 px radius with 0..4 random discs cut out (holes, bites, islands)."""
    rng = np.random.default_rng(seed)
    found = []
    for i in range(count):
        mask = np.zeros((size, size), np.uint8)
        radius, (cx, cy) = int(rng.integers(1, 26)), rng.integers(20, 44, 2)
        if i % 3 == 0:
            cv2.fillPoly(mask, [rng.integers(cx - radius, cx + radius + 1, (3, 2)).astype(np.int32)], 1)
        else:
            cv2.circle(mask, (int(cx), int(cy)), radius, 1, -1)
        for _ in range(int(rng.integers(0, 5))):
            dx, dy = rng.integers(-radius, radius + 1, 2)
            cv2.circle(mask, (int(cx + dx), int(cy + dy)), int(rng.integers(1, max(2, radius // 2))), 0, -1)
        found.append(mask.astype(bool))
    return found


def test_voc_palette_matches_the_devkit_colours():
    palette = masks.voc_palette()
    assert len(palette) == 768
    colour = {k: tuple(palette[3 * k:3 * k + 3]) for k in range(256)}
    # VOC devkit labelcolormap: background, aeroplane, bicycle, person, tvmonitor, void
    assert colour[0] == (0, 0, 0) and colour[1] == (128, 0, 0) and colour[2] == (0, 128, 0)
    assert colour[15] == (192, 128, 128) and colour[20] == (0, 64, 128) and colour[255] == (224, 224, 192)
    assert len(set(colour.values())) == 256


@pytest.mark.parametrize("high", [255, 300, 65535])
def test_index_mask_round_trip(tmp_path, high):
    mask = np.random.default_rng(0).integers(0, high + 1, (17, 23))
    mask[0, 0] = high
    masks.write_index_mask(tmp_path / "m.png", mask)
    with Image.open(tmp_path / "m.png") as image:
        assert image.mode == ("L" if high <= 255 else "I;16")
    back = masks.read_index_mask(tmp_path / "m.png")
    assert back.dtype == (np.uint8 if high <= 255 else np.uint16)
    np.testing.assert_array_equal(back, mask)
    assert [p.name for p in tmp_path.iterdir()] == ["m.png"]  # no temporary file left behind


def test_palette_mask_round_trip_reads_ids_not_colours(tmp_path):
    mask = np.arange(256, dtype=np.uint8).reshape(16, 16)
    masks.write_palette_mask(tmp_path / "p.png", mask)
    with Image.open(tmp_path / "p.png") as image:
        assert image.mode == "P" and image.getpalette()[:6] == [0, 0, 0, 128, 0, 0]
        assert image.convert("RGB").getpixel((1, 0)) == (128, 0, 0)
    np.testing.assert_array_equal(masks.read_index_mask(tmp_path / "p.png"), mask)


def test_bad_masks_are_refused_with_the_file_named(tmp_path):
    with pytest.raises(ValueError, match=r"a\.png.*\(H, W\)"):
        masks.write_index_mask(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match=r"b\.png.*integer"):
        masks.write_index_mask(tmp_path / "b.png", np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match=r"c\.png.*0\.\.255"):
        masks.write_palette_mask(tmp_path / "c.png", np.full((4, 4), 256))
    with pytest.raises(ValueError, match=r"d\.png.*0\.\.65535"):
        masks.write_index_mask(tmp_path / "d.png", np.full((4, 4), -1))
    assert not any(tmp_path.iterdir())


def test_reading_a_colour_or_broken_mask_names_the_file(tmp_path):
    Image.new("RGB", (4, 4), (128, 0, 0)).save(tmp_path / "rgb.png")
    with pytest.raises(AnnotationError, match=r"rgb\.png: a RGB image is not an index mask"):
        masks.read_index_mask(tmp_path / "rgb.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    with pytest.raises(AnnotationError, match=r"broken\.png: cannot read the mask"):
        masks.read_index_mask(tmp_path / "broken.png")
    with pytest.raises(AnnotationError, match=r"missing\.png"):
        masks.read_index_mask(tmp_path / "missing.png")


def test_polygons_rasterise_back_to_the_exact_mask():
    for mask in random_masks(150):
        polygons = masks.mask_to_polygons(mask)
        assert all(len(p) >= 6 and len(p) % 2 == 0 for p in polygons)
        np.testing.assert_array_equal(coco_rasterise(polygons, *mask.shape), mask)
        np.testing.assert_array_equal(masks.polygons_to_mask(polygons, *mask.shape), mask)


def test_polygons_of_holes_islands_and_degenerate_masks():
    ring = np.zeros((20, 20), bool)
    ring[2:18, 2:18] = True
    ring[6:14, 6:14] = False
    ring[9:11, 9:11] = True       # an island inside the hole: a second polygon
    ring[0, 0] = ring[1, 1] = True  # pixels touching only at a corner
    ring[19, 19] = True             # a lone pixel at the image corner
    polygons = masks.mask_to_polygons(ring)
    np.testing.assert_array_equal(coco_rasterise(polygons, 20, 20), ring)
    np.testing.assert_array_equal(masks.polygons_to_mask(polygons, 20, 20), ring)
    # a lone pixel: a square a quarter pixel inside its edges
    assert masks.mask_to_polygons(ring[19:, 19:]) == [[0.25, 0.25, 0.25, 0.75, 0.75, 0.75, 0.75, 0.25]]
    assert masks.mask_to_polygons(np.zeros((5, 5), bool)) == []
    crop = masks.mask_to_polygons(ring[5:15, 4:16], offset=(4, 5))  # the hole and island, traced in a crop
    np.testing.assert_array_equal(masks.polygons_to_mask(crop, 20, 20)[5:15, 4:16], ring[5:15, 4:16])
    assert not masks.polygons_to_mask([[1.0, 1.0, 3.0, 3.0]], 5, 5).any()  # fewer than 3 points cover nothing


def test_polygon_area_and_box_match_pycocotools():
    for mask in random_masks(30, seed=1):
        rle = coco_mask.merge(coco_mask.frPyObjects(masks.mask_to_polygons(mask), *mask.shape))
        assert coco_mask.area(rle) == mask.sum()
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        np.testing.assert_array_equal(coco_mask.toBbox(rle),
                                      [cols[0], rows[0], cols[-1] + 1 - cols[0], rows[-1] + 1 - rows[0]])
