"""Selective Search proposals: valid boxes, determinism, recall on a drawn object, resizing, bad input."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from ninshiki.classical.selective_search import rank_proposals, selective_search


def _textured(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smoothed colour noise: a background with texture at several scales."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (height, width, 3)).astype(np.uint8)
    coarse = cv2.resize(rng.integers(60, 200, (height // 16, width // 16, 3)).astype(np.uint8), (width, height),
                        interpolation=cv2.INTER_CUBIC)
    return cv2.addWeighted(cv2.GaussianBlur(noise, (5, 5), 1.5), 0.4, coarse, 0.6, 0)


def _with_rectangle(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    out = image.copy()
    x1, y1, x2, y2 = box
    out[y1:y2, x1:x2] = (230, 30, 40)
    return out


def _best_iou(boxes: np.ndarray, box: tuple[int, int, int, int]) -> float:
    return float(box_iou(torch.tensor([box], dtype=torch.float32), torch.from_numpy(boxes)).max())


def test_boxes_are_valid_xyxy_inside_the_image() -> None:
    image = _textured(96, 128)
    boxes = selective_search(image, max_proposals=500, min_size=6)
    assert boxes.dtype == np.float32 and boxes.ndim == 2 and boxes.shape[1] == 4
    assert 20 < len(boxes) <= 500
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 128).all() and (boxes[:, 3] <= 96).all()
    assert ((boxes[:, 2:] - boxes[:, :2]) >= 6).all()
    assert len(np.unique(boxes, axis=0)) == len(boxes)


def test_same_image_same_boxes_in_the_same_order() -> None:
    image = _textured(80, 80, seed=1)
    first, second = selective_search(image), selective_search(image)
    np.testing.assert_array_equal(first, second)   # OpenCV's own order changes between these two calls
    reseeded = selective_search(image, seed=1)
    assert {tuple(b) for b in reseeded} == {tuple(b) for b in first}
    assert not np.array_equal(reseeded, first)
    np.testing.assert_array_equal(selective_search(image, max_proposals=10), first[:10])


def test_finds_a_drawn_rectangle_on_a_textured_background() -> None:
    box = (37, 22, 91, 70)
    boxes = selective_search(_with_rectangle(_textured(112, 128, seed=2), box))
    assert _best_iou(boxes, box) > 0.7


def test_large_images_are_shrunk_and_boxes_come_back_in_image_pixels() -> None:
    box = (150, 90, 400, 300)
    image = _with_rectangle(_textured(480, 640, seed=3), box)
    boxes = selective_search(image, max_side=160, min_size=20)
    assert boxes[:, 2].max() <= 640 and boxes[:, 3].max() <= 480 and boxes[:, 2].max() > 320
    assert _best_iou(boxes, box) > 0.7
    assert ((boxes[:, 2:] - boxes[:, :2]) >= 20).all()


def test_gray_input_is_the_replicated_rgb_image_and_a_flat_image_gives_itself() -> None:
    gray = _textured(64, 64)[:, :, 1].copy()
    np.testing.assert_array_equal(selective_search(gray), selective_search(np.dstack([gray] * 3)))
    np.testing.assert_array_equal(selective_search(gray[:, :, None]), selective_search(gray))
    np.testing.assert_array_equal(selective_search(np.full((30, 50, 3), 128, np.uint8)), [[0, 0, 50, 30]])


def test_quality_mode_finds_more_than_fast() -> None:
    image = _textured(64, 64, seed=4)
    fast, quality = selective_search(image), selective_search(image, mode="quality")
    assert len(quality) > len(fast)
    assert {tuple(b) for b in fast} <= {tuple(b) for b in selective_search(image, mode="quality", max_proposals=10**6)}


def test_opencv_thread_setting_is_left_alone() -> None:
    before = cv2.getNumThreads()
    try:
        cv2.setNumThreads(1)
        selective_search(_textured(48, 48))
        assert cv2.getNumThreads() == 1
    finally:
        cv2.setNumThreads(before)


def test_ranking_is_a_seeded_permutation_that_favours_large_boxes() -> None:
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 100, (400, 2))
    boxes = np.hstack([corners, corners + rng.uniform(1, 100, (400, 2))])
    ranked = rank_proposals(boxes, seed=5)
    np.testing.assert_array_equal(np.sort(ranked, axis=0), np.sort(boxes, axis=0))
    np.testing.assert_array_equal(ranked, rank_proposals(boxes, seed=5))
    areas = (ranked[:, 2] - ranked[:, 0]) * (ranked[:, 3] - ranked[:, 1])
    assert areas[:100].mean() > 2 * areas[-100:].mean()


@pytest.mark.parametrize(("image", "message"), [
    (np.zeros((8, 8, 3), np.float32), "uint8"),
    (np.zeros((8, 8, 4), np.uint8), "shape"),
    (np.zeros((0, 8, 3), np.uint8), "empty"),
    ([[0, 1], [2, 3]], "uint8"),
])
def test_bad_images_are_refused_with_a_reason(image: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        selective_search(image)


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="mode"):
        selective_search(np.zeros((8, 8, 3), np.uint8), mode="slow")
