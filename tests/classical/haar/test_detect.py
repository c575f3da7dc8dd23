"""`detect_multiscale` against `cv2.CascadeClassifier.detectMultiScale` on the same images with OpenCV's own
cascades: the same raw windows (min_neighbors=0) and the same grouped boxes and neighbour counts, exactly."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from ninshiki.classical.haar.detect import (
    _visited,
    compile_cascade,
    detect_multiscale,
    group_rectangles,
    pyramid_scales,
)
from ninshiki.classical.haar.opencv_xml import opencv_cascade_path, read_cascade_xml

PHOTOS = Path("/usr/share/doc/opencv-doc/examples/data")


def _cascades(name: str):
    path = opencv_cascade_path(name)
    return compile_cascade(read_cascade_xml(path)), cv2.CascadeClassifier(str(path))


def _astronaut(scale: float = 0.5) -> np.ndarray:
    gray = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY)   # (512, 512)
    return cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def _rows(rects) -> list[tuple[int, ...]]:
    return sorted(map(tuple, np.asarray(rects).reshape(-1, 4).tolist()))


def _assert_same_as_opencv(ours, theirs, gray: np.ndarray, **kwargs) -> np.ndarray:
    """Our boxes (N, 4) xywh, after checking they and their neighbour counts are OpenCV's."""
    boxes, neighbours, scores = detect_multiscale(ours, gray, **kwargs)
    cv_kwargs = {"scaleFactor": kwargs.get("scale_factor", 1.1), "minNeighbors": kwargs.get("min_neighbors", 3),
                 "minSize": kwargs.get("min_size", (0, 0)), "maxSize": kwargs.get("max_size") or (0, 0)}
    rects, counts = theirs.detectMultiScale2(gray, **cv_kwargs)
    assert sorted(zip(map(tuple, boxes.tolist()), neighbours.tolist())) == \
        sorted(zip(map(tuple, np.asarray(rects).reshape(-1, 4).tolist()), np.asarray(counts).tolist()))
    assert boxes.dtype == neighbours.dtype == np.int64 and scores.dtype == np.float64
    assert ((scores > 0) & (scores < 1)).all() and (np.diff(scores) <= 0).all()
    assert (np.diff(neighbours) <= 0).all()   # scores order boxes by neighbour count first
    return boxes


def test_frontal_face_on_astronaut_equals_opencv():
    ours, theirs = _cascades("haarcascade_frontalface_default")
    gray = _astronaut()
    boxes = _assert_same_as_opencv(ours, theirs, gray)
    assert boxes[0].tolist() == [86, 31, 53, 53]   # her face (the other box, on her shoulder, OpenCV finds too)
    assert len(_assert_same_as_opencv(ours, theirs, gray, min_neighbors=0)) > 20   # every raw window
    assert len(_assert_same_as_opencv(ours, theirs, gray, scale_factor=1.3, min_neighbors=1)) >= 1


def test_size_limits_and_the_closest_scale_fallback_equal_opencv():
    ours, theirs = _cascades("haarcascade_frontalface_default")
    gray = _astronaut()
    assert len(_assert_same_as_opencv(ours, theirs, gray, min_neighbors=0, min_size=(30, 30), max_size=(60, 60))) > 0
    # no scale's window lies in [60, 50]: OpenCV then scans the one closest to min_size
    assert len(_assert_same_as_opencv(ours, theirs, gray, min_neighbors=0, min_size=(60, 60), max_size=(50, 50))) > 0


def test_eye_cascade_and_a_tilted_feature_cascade_equal_opencv():
    gray = _astronaut()
    ours, theirs = _cascades("haarcascade_eye")
    assert len(_assert_same_as_opencv(ours, theirs, gray, min_neighbors=0)) > 0
    ours, theirs = _cascades("haarcascade_upperbody")   # 474 of its features are tilted
    assert len(_assert_same_as_opencv(ours, theirs, gray, min_neighbors=0)) > 0


@pytest.mark.parametrize("photo, scale", [("messi5.jpg", 0.55), ("basketball1.png", 0.5), ("left01.jpg", 0.5)])
def test_real_photos_equal_opencv(photo, scale):
    if not (PHOTOS / photo).is_file():
        pytest.skip(f"OpenCV's sample photos are not installed in {PHOTOS} (Debian/Ubuntu: opencv-doc)")
    gray = cv2.imread(str(PHOTOS / photo), cv2.IMREAD_GRAYSCALE)
    gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    ours, theirs = _cascades("haarcascade_frontalface_default")
    _assert_same_as_opencv(ours, theirs, gray)
    assert len(_assert_same_as_opencv(ours, theirs, gray, min_neighbors=0)) > 0


def test_boxes_overhanging_the_image_are_cut_as_opencv_cuts_them():
    if not (PHOTOS / "messi5.jpg").is_file():
        pytest.skip(f"OpenCV's sample photos are not installed in {PHOTOS} (Debian/Ubuntu: opencv-doc)")
    gray = cv2.imread(str(PHOTOS / "messi5.jpg"), cv2.IMREAD_GRAYSCALE)
    gray = cv2.resize(gray, None, fx=0.75, fy=0.75, interpolation=cv2.INTER_AREA)   # (256, 411)
    ours, theirs = _cascades("haarcascade_smile")
    boxes = _assert_same_as_opencv(ours, theirs, gray, min_neighbors=1)
    assert [102, 214, 82, 41] in boxes.tolist()   # the mean of its windows reaches row 257: cut after grouping


def test_takes_an_uncompiled_cascade_and_small_images():
    cascade = read_cascade_xml(opencv_cascade_path("haarcascade_eye"))
    gray = _astronaut(0.25)[30:70, 40:100]
    raw = detect_multiscale(cascade, gray, min_neighbors=0)[0]
    assert _rows(raw) == _rows(cv2.CascadeClassifier(str(opencv_cascade_path("eye"))).detectMultiScale(
        gray, minNeighbors=0))
    boxes, neighbours, scores = detect_multiscale(cascade, gray[:10, :30])   # smaller than the 20 x 20 window
    assert boxes.shape == (0, 4) and neighbours.shape == scores.shape == (0,)


def test_bad_arguments():
    ours, _ = _cascades("haarcascade_eye")
    with pytest.raises(ValueError, match="grayscale"):
        detect_multiscale(ours, np.zeros((40, 40, 3), np.uint8))
    with pytest.raises(ValueError, match="grayscale"):
        detect_multiscale(ours, np.zeros((40, 40), np.float32))
    with pytest.raises(ValueError, match="scale_factor must be > 1"):
        detect_multiscale(ours, np.zeros((40, 40), np.uint8), scale_factor=1.0)


def test_pyramid_scales_follow_opencv():
    scales = pyramid_scales((24, 24), (100, 60), 1.1)
    assert scales[0] == 1 and all(s.dtype == np.float32 for s in scales)
    assert round(24 * float(scales[-1])) <= 60 < round(24 * float(scales[-1]) * 1.1)
    assert pyramid_scales((24, 24), (20, 60), 1.1) == []
    assert pyramid_scales((24, 24), (100, 60), 1.1, (40, 40), (50, 50)) == [s for s in scales if 40 <= round(
        24 * float(s)) <= 50]


def _visited_loop(rejected: np.ndarray) -> np.ndarray:
    """OpenCV's scan, literally: `if (result == 0) x += step` after a stage-0 rejection."""
    out = np.zeros_like(rejected)
    for row in range(rejected.shape[0]):
        col = 0
        while col < rejected.shape[1]:
            out[row, col] = True
            col += 2 if rejected[row, col] else 1
    return out


def test_visited_windows_follow_opencvs_scan():
    rng = np.random.default_rng(0)
    for p in (0.1, 0.5, 0.9):
        rejected = rng.random((20, 37)) < p
        np.testing.assert_array_equal(_visited(rejected), _visited_loop(rejected))


def test_group_rectangles_equals_opencv():
    rng = np.random.default_rng(1)
    centres = rng.integers(0, 300, (25, 2))
    sizes = rng.integers(20, 120, 25)
    rects = []
    for (cx, cy), s, n in zip(centres, sizes, rng.integers(1, 9, 25)):   # clusters of 1..8 jittered boxes
        jitter = rng.integers(-3, 4, (n, 3))
        rects += [[cx + dx, cy + dy, s + ds, s + ds] for dx, dy, ds in jitter]
    rects += [[100, 100, 200, 200]] * 6 + [[130, 130, 60, 60]] * 2   # a weak box inside a strong one
    rects = np.array(rects)
    for threshold in (1, 2, 3, 5):
        boxes, counts, members = group_rectangles(rects, threshold)
        want, weights = cv2.groupRectangles(rects.tolist(), threshold, 0.2)
        assert sorted(zip(map(tuple, boxes.tolist()), counts.tolist())) == \
            sorted(zip(map(tuple, np.asarray(want).reshape(-1, 4).tolist()), np.asarray(weights).tolist()))
        assert np.array_equal(np.bincount(members[members >= 0], minlength=len(boxes)), counts)
    boxes, counts, members = group_rectangles(rects, 0)
    assert np.array_equal(boxes, rects) and (counts == 1).all() and np.array_equal(members, np.arange(len(rects)))
