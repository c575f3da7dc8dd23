"""Sliding-window HOG detection against `cv2.HOGDescriptor.detectMultiScale` on real frames.

Provenance: OpenCV's default (Dalal-Triggs INRIA, 64x128) and Daimler (48x96) people detectors, run live by
the installed opencv-python on frames of OpenCV's sample video vtest.avi (pedestrians). Rectangles must be
identical; scores (SVM margins) within 1e-5 (OpenCV sums each block in float32; measured <= 8e-7).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from ninshiki.classical.hog import HOGParams
from ninshiki.classical.hog_detect import (
    detect_multiscale,
    group_rectangles,
    pyramid_hits,
    pyramid_scales,
    score_windows,
)

DATA = Path("/usr/share/doc/opencv-doc/examples/data")
PEOPLE = cv2.HOGDescriptor_getDefaultPeopleDetector().ravel()
DAIMLER = cv2.HOGDescriptor_getDaimlerPeopleDetector().ravel()


def read_frames(count: int, step: int = 6) -> list[np.ndarray]:
    """Every `step`-th frame of vtest.avi (768x576 BGR), or a skip when OpenCV's sample data is missing."""
    if not (DATA / "vtest.avi").exists():
        pytest.skip(f"OpenCV's sample data is not installed ({DATA}; Debian package opencv-doc)")
    capture = cv2.VideoCapture(str(DATA / "vtest.avi"))
    frames = []
    for i in range(count * step):
        ok, frame = capture.read()
        if not ok:
            break
        if i % step == 0:
            frames.append(frame)
    capture.release()
    return frames


def _opencv(image, detector=PEOPLE, win_size=(64, 128), **kwargs) -> tuple[np.ndarray, np.ndarray]:
    hog = cv2.HOGDescriptor(win_size, (16, 16), (8, 8), (8, 8), 9, 1, -1, cv2.HOGDescriptor_L2Hys, 0.2, True,
                            kwargs.pop("nlevels", 64))
    hog.setSVMDetector(detector)
    rects, weights = hog.detectMultiScale(image, **kwargs)
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in rects], np.float64).reshape(-1, 4)
    return boxes, np.asarray(weights, np.float64).ravel()


def assert_same_detections(ours: tuple[np.ndarray, np.ndarray], theirs: tuple[np.ndarray, np.ndarray]) -> None:
    """Equal as sets (OpenCV's order depends on its threads), scores within 1e-5."""
    (boxes, scores), (ref_boxes, ref_scores) = ours, theirs
    order, ref_order = np.lexsort(boxes.T[::-1]), np.lexsort(ref_boxes.T[::-1])
    np.testing.assert_array_equal(boxes[order], ref_boxes[ref_order])
    np.testing.assert_allclose(scores[order], ref_scores[ref_order], rtol=0, atol=1e-5)


def test_people_detector_equals_opencv_on_a_frame():
    frame = read_frames(1)[0]
    ours = detect_multiscale(frame, PEOPLE[:-1], PEOPLE[-1], HOGParams())
    theirs = _opencv(frame)
    assert len(theirs[0]) >= 2        # pedestrians are found, so the comparison means something
    assert_same_detections(ours, theirs)
    assert np.all(np.diff(ours[1]) <= 0)


def test_every_raw_hit_equals_opencv():
    """group threshold 0: every window of every level above the threshold, so levels, window positions,
    the rounding of rectangles and each score are compared, not only the grouped survivors."""
    frame = read_frames(1)[0]
    ours = detect_multiscale(frame, PEOPLE[:-1], PEOPLE[-1], HOGParams(), group_threshold=0)
    theirs = _opencv(frame, groupThreshold=0)
    assert len(theirs[0]) > 20
    assert_same_detections(ours, theirs)


@pytest.mark.parametrize("options", [
    {"win_stride": (8, 8), "padding": (16, 16), "scale": 1.1, "hit_threshold": 0.2},
    {"win_stride": (4, 4), "scale": 1.3, "group_threshold": 1, "nlevels": 5},
])
def test_options_equal_opencv_on_gray(options):
    frame = cv2.cvtColor(read_frames(1)[0], cv2.COLOR_BGR2GRAY)
    names = {"win_stride": "winStride", "padding": "padding", "scale": "scale", "hit_threshold": "hitThreshold",
             "group_threshold": "groupThreshold", "nlevels": "nlevels"}
    theirs = _opencv(frame, **{names[k]: v for k, v in options.items()})
    assert_same_detections(detect_multiscale(frame, PEOPLE[:-1], PEOPLE[-1], HOGParams(), **options), theirs)


def test_daimler_detector_equals_opencv():
    frame = read_frames(1)[0]
    params = HOGParams(win_size=(48, 96))
    theirs = _opencv(frame, DAIMLER, (48, 96), hitThreshold=1.0)
    assert len(theirs[0]) >= 1
    assert_same_detections(detect_multiscale(frame, DAIMLER[:-1], DAIMLER[-1], params, hit_threshold=1.0), theirs)


@pytest.mark.slow
def test_ten_frames_and_photos_equal_opencv():
    images = read_frames(10) + [cv2.imread(str(DATA / name)) for name in ("basketball1.png", "basketball2.png",
                                                                         "left01.jpg", "messi5.jpg")]
    for image in images:
        assert_same_detections(detect_multiscale(image, PEOPLE[:-1], PEOPLE[-1], HOGParams()), _opencv(image))


def test_pyramid_scales():
    scales = pyramid_scales((768, 576), (64, 128), scale=1.05, nlevels=64)
    assert scales[0] == 1.0 and len(scales) == 31          # 576 / 1.05^30 = 133 >= 128; 1.05^31 gives 127
    assert round(576 / scales[-1]) >= 128 and round(576 / (scales[-1] * 1.05)) < 128
    assert pyramid_scales((768, 576), (64, 128), nlevels=5) == [1.0, 1.05, 1.05 ** 2, 1.05 ** 3, 1.05 ** 4]
    assert pyramid_scales((32, 32), (64, 128)) == [1.0]       # OpenCV still scans level 1 (finding nothing)
    assert pyramid_scales((768, 576), (64, 128), scale=1.0) == [1.0]


def test_group_rectangles_rules():
    rects = np.array([[10, 10, 64, 128], [11, 10, 64, 128], [12, 11, 64, 128],      # a cluster of 3
                      [300, 10, 64, 128], [301, 10, 64, 128],                        # 2: not above threshold 2
                      [20, 30, 30, 60], [21, 30, 30, 60], [20, 31, 30, 60]])        # 3, inside the first
    scores = np.array([0.5, 0.9, 0.1, 2.0, 2.0, 0.3, 0.2, 0.4])
    kept, best = group_rectangles(rects, scores, group_threshold=2)
    # (10 + 11 + 12) / 3 = 11; (10 + 10 + 11) / 3 = 10.33 -> 10. The small cluster (3 members) lies inside the
    # big one, but is only dropped when the big one has more than max(3, 3) members: kept.
    np.testing.assert_array_equal(kept, [[11, 10, 64, 128], [20, 30, 30, 60]])
    np.testing.assert_array_equal(best, [0.9, 0.4])
    rects = np.concatenate([rects, [[10, 11, 64, 128]]])                            # the big cluster: 4
    kept, best = group_rectangles(rects, np.append(scores, 0.0), group_threshold=2)
    np.testing.assert_array_equal(kept, [[11, 10, 64, 128]])                       # (43 / 4 = 10.75 -> 11)
    kept, _ = group_rectangles(rects, np.append(scores, 0.0), group_threshold=0)
    assert len(kept) == len(rects)


def test_scores_are_the_window_descriptors_dot_the_weights():
    """The correlation path (one product per block) against explicit descriptors of `hog_windows`."""
    from ninshiki.classical.hog import hog_blocks, hog_windows

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (150, 90, 3)).astype(np.uint8)
    params = HOGParams()
    weights = rng.standard_normal((2, params.descriptor_size)).astype(np.float32)
    bias = np.array([0.5, -1.0])
    margins = score_windows(hog_blocks(image, params), weights, bias, params, grid_stride=(8, 8),
                            win_stride=(8, 8))                                       # (2, Ny, Nx)
    windows = hog_windows(image, params, win_stride=(8, 8)).astype(np.float64)      # (Ny, Nx, D)
    np.testing.assert_allclose(margins, (windows @ weights.T.astype(np.float64) + bias).transpose(2, 0, 1),
                               rtol=0, atol=1e-4)
    rects, _, labels = pyramid_hits(image, weights, bias, params, hit_threshold=-1e9, nlevels=1)
    assert len(rects) == 2 * margins[0].size and set(labels.tolist()) == {0, 1}


def test_nms_grouping_and_errors():
    frame = read_frames(1)[0]
    boxes, _scores = detect_multiscale(frame, PEOPLE[:-1], PEOPLE[-1], HOGParams(), grouping="nms", nms_iou=0.3)
    raw, _ = detect_multiscale(frame, PEOPLE[:-1], PEOPLE[-1], HOGParams(), grouping="none")
    assert 0 < len(boxes) < len(raw)
    from torchvision.ops import box_iou
    iou = box_iou(torch.from_numpy(boxes), torch.from_numpy(boxes)).fill_diagonal_(0)
    assert float(iou.max()) <= 0.3
    with pytest.raises(ValueError, match="3780"):
        detect_multiscale(frame, PEOPLE[:100], 0.0, HOGParams())
    with pytest.raises(ValueError, match="grouping"):
        detect_multiscale(frame, PEOPLE[:-1], 0.0, HOGParams(), grouping="meanshift")
