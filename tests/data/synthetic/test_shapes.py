"""The object classes: areas against closed forms, aspect and rotation, glyph topology, class names."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from ninshiki.data.synthetic.shapes import DEFAULT_CLASSES, RING_INNER, Pose, check_classes, draw_object, glyph_of


def mask_of(name: str, size: float = 60, angle: float = 0, aspect: float = 1) -> np.ndarray:
    return draw_object(name, Pose(size=size, angle=angle, aspect=aspect)) >= 0.5


def holes(mask: np.ndarray) -> int:
    """Holes in a mask: inner contours of a two-level hierarchy."""
    _, hierarchy = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    return int((hierarchy[0][:, 3] != -1).sum())


# closed-form areas of objects whose longer upright side is 60 px
AREAS = {
    "circle": math.pi * 30 ** 2,
    "ring": math.pi * 30 ** 2 * (1 - RING_INNER ** 2),
    "square": 60.0 ** 2,
    "hexagon": 3 * math.sqrt(3) / 2 * 30 ** 2,        # vertex up: height 2R = 60
    "triangle": 3 * math.sqrt(3) / 4 * (60 / math.sqrt(3)) ** 2,  # vertex up: width sqrt(3) R = 60
}


@pytest.mark.parametrize("name", sorted(AREAS))
@pytest.mark.parametrize("angle", [0.0, 37.0])
def test_mask_areas_match_closed_forms(name, angle):
    area = mask_of(name, angle=angle).sum()
    assert area == pytest.approx(AREAS[name], rel=0.015)


def test_coverage_is_antialiased_and_cropped_tight():
    for name in DEFAULT_CLASSES:
        coverage = draw_object(name, Pose(size=40, angle=20, aspect=1.1))
        assert coverage.dtype == np.float32 and 0 <= coverage.min() and coverage.max() <= 1
        assert ((coverage > 0) & (coverage < 1)).any()  # soft edges
        for edge in (coverage[0], coverage[-1], coverage[:, 0], coverage[:, -1]):
            assert edge.max() > 0
        np.testing.assert_array_equal(coverage, draw_object(name, Pose(size=40, angle=20, aspect=1.1)))


def test_size_aspect_and_rotation():
    mask = mask_of("circle", size=60, aspect=1.25)
    height, width = mask.shape
    assert width / height == pytest.approx(1.25, rel=0.04) and max(height, width) == pytest.approx(67, abs=2)
    height, width = mask_of("circle", size=60, angle=90, aspect=1.25).shape
    assert height / width == pytest.approx(1.25, rel=0.04)
    for name in DEFAULT_CLASSES:
        assert max(mask_of(name, size=50).shape) == pytest.approx(50, abs=2)


def test_rotation_is_counter_clockwise():
    def mass_on_top(mask: np.ndarray) -> float:
        return mask[: mask.shape[0] // 2].sum() / mask.sum()

    assert mass_on_top(mask_of("triangle")) < 0.4          # vertex up: the base holds most pixels
    assert mass_on_top(mask_of("triangle", angle=180)) > 0.6
    assert mass_on_top(mask_of("letter_T")) > 0.5           # the bar is on top
    left = mask_of("triangle", angle=90)                     # vertex turned to the left
    assert left[:, : left.shape[1] // 2].sum() < left[:, left.shape[1] // 2:].sum()


def test_glyph_and_ring_topology():
    assert holes(mask_of("ring")) == 1
    assert holes(mask_of("letter_A", size=80)) == 1
    assert holes(mask_of("letter_T", size=80)) == 0
    assert holes(mask_of("digit_8", size=80)) == 2
    assert holes(mask_of("star")) == 0


def test_class_names():
    assert check_classes(list(DEFAULT_CLASSES)) == list(DEFAULT_CLASSES)
    assert 6 <= len(DEFAULT_CLASSES) <= 8
    assert glyph_of("letter_A") == "A" and glyph_of("digit_7") == "7" and glyph_of("circle") is None
    assert glyph_of("letter_AB") is None and glyph_of("letter_ ") is None and glyph_of("digit_x") is None
    with pytest.raises(ValueError, match="unknown class 'oval'"):
        check_classes(["circle", "oval"])
    with pytest.raises(ValueError, match="duplicate"):
        check_classes(["circle", "circle"])
    with pytest.raises(ValueError, match="at least one"):
        check_classes([])
