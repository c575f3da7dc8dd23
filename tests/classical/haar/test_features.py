"""Haar-like features: the enumeration against the paper's / scikit-image's count, values against direct pixel sums
(the obviously-correct reference) and against `skimage.feature.haar_like_feature`, normalisation as OpenCV's."""
from collections import Counter

import numpy as np
import pytest
from skimage.feature import haar_like_feature, haar_like_feature_coord
from skimage.transform import integral_image

from ninshiki.classical.haar.cascade import HaarFeature
from ninshiki.classical.haar.features import (
    batch_integrals,
    compile_features,
    enumerate_features,
    feature_values,
    variance_norm,
    window_ok,
    window_values,
)

_SKIMAGE_KIND = {"type-2-x": "x2", "type-2-y": "y2", "type-3-x": "x3", "type-3-y": "y3", "type-4": "x2y2"}


def _kind(feature: HaarFeature) -> str:
    """Recover the kind from OpenCV-convention rectangles: the whole rect first, then its '+' cells."""
    whole, cell = feature.rects[0], feature.rects[1]
    if len(feature.rects) == 3:
        return "x2y2"
    across, down = round(whole[2] / cell[2]), round(whole[3] / cell[3])
    return {(2, 1): "x2", (1, 2): "y2", (3, 1): "x3", (1, 3): "y3"}[(across, down)]


def _raw(patch: np.ndarray, feature: HaarFeature) -> float:
    """sum_i weight_i * S(rect_i) by summing pixels."""
    pixels = patch.astype(np.float64)
    return sum(w * pixels[int(y):int(y + h), int(x):int(x + wd)].sum() for x, y, wd, h, w in feature.rects)


def _opencv_vnf(patch: np.ndarray) -> np.float32:
    """OpenCV's factor: float32(1 / sqrt(A q - s^2)) over the inner rectangle (1, 1, w - 2, h - 2)."""
    inner = patch[1:-1, 1:-1].astype(np.float64)
    nf = inner.size * (inner ** 2).sum() - inner.sum() ** 2
    return np.float32(1.0 / np.sqrt(nf)) if nf > 0 else np.float32(1.0)


def test_count_equals_the_paper_set_of_skimage():
    # 162,336 for 24 x 24: the paper's five kinds; per-kind counts frozen from scikit-image 0.26's
    # haar_like_feature_coord(24, 24) (type-2-x, type-2-y, type-3-x, type-3-y, type-4), which takes ~1 s to run
    counts = {"x2": 43200, "y2": 43200, "x3": 27600, "y3": 27600, "x2y2": 20736}
    assert {k: len(enumerate_features((24, 24), kinds=(k,))) for k in counts} == counts
    assert sum(counts.values()) == 162336
    assert len(enumerate_features((24, 24), step=2)) == 12372
    _, types = haar_like_feature_coord(11, 8)                   # a small window, live
    assert Counter(_kind(f) for f in enumerate_features((11, 8))) == Counter(_SKIMAGE_KIND[t] for t in types)


def test_opencv_rect_convention():
    first = {_kind(f): f.rects for f in enumerate_features((6, 6))[::-1]}   # the first feature of each kind
    np.testing.assert_array_equal(first["x2"], [[0, 0, 2, 1, -1], [1, 0, 1, 1, 2]])
    np.testing.assert_array_equal(first["y3"], [[0, 0, 1, 3, -1], [0, 1, 1, 1, 3]])
    np.testing.assert_array_equal(first["x2y2"], [[0, 0, 2, 2, -1], [0, 0, 1, 1, 2], [1, 1, 1, 1, 2]])
    sizes = enumerate_features((24, 24), min_size=3, step=3)
    assert all(f.rects[1:, 2:4].min() >= 3 and f.rects[0, 0] % 3 == 0 and f.rects[0, 1] % 3 == 0 for f in sizes)


def test_values_equal_direct_sums_bit_for_bit():
    rng = np.random.default_rng(0)
    patches = rng.integers(0, 256, (16, 24, 24)).astype(np.uint8)
    patches[3] = 40                                            # flat: nf = 0, OpenCV's factor is 1
    features = enumerate_features((24, 24))
    pick = rng.choice(len(features), 400, replace=False)
    values = feature_values(patches, [features[i] for i in pick])
    assert values.shape == (16, 400) and values.dtype == np.float32
    expected = np.array([[np.float32(_raw(p, features[i])) * _opencv_vnf(p) for i in pick] for p in patches])
    np.testing.assert_array_equal(values, expected)
    np.testing.assert_array_equal(values[3], 0)                # weights sum to zero: constant images give 0


def test_raw_values_against_skimage():
    # skimage: x2/y2 = second - first rect (ours too); x3/y3 = middle - sides (ours: 2 middle - sides, so ours =
    # skimage + middle sum); x2y2 = top-right + bottom-left - top-left - bottom-right (ours is minus that)
    rng = np.random.default_rng(1)
    patch = rng.integers(0, 256, (7, 9)).astype(np.uint8)
    coords, types = haar_like_feature_coord(9, 7)
    reference = haar_like_feature(integral_image(patch.astype(np.int64)), 0, 0, 9, 7, feature_type=types,
                                  feature_coord=coords)
    by_geometry = {}
    for coord, kind, value in zip(coords, types, reference):
        (r0, c0), (r1, c1) = coord[0]
        by_geometry[(_SKIMAGE_KIND[kind], c0, r0, c1 - c0 + 1, r1 - r0 + 1)] = value
    features = enumerate_features((9, 7))
    ii, _ = batch_integrals(patch[None])
    raw = window_values(ii.ravel(), np.zeros(1, np.int64), 10, compile_features(features, (9, 7)), np.ones(1))[0]
    assert len(by_geometry) == len(features)
    for feature, value in zip(features, raw):
        kind, cell = _kind(feature), feature.rects[1]
        x, y = feature.rects[0, :2]
        sk = by_geometry[(kind, x, y, cell[2], cell[3])]
        middle = patch[int(cell[1]):int(cell[1] + cell[3]), int(cell[0]):int(cell[0] + cell[2])].sum()
        expected = {"x2": sk, "y2": sk, "x3": sk + middle, "y3": sk + middle, "x2y2": -sk}[kind]
        assert value == expected, (feature.rects, value, expected)


def test_windows_inside_an_image_equal_their_cropped_patches():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (40, 57)).astype(np.uint8)
    features = enumerate_features((12, 10), step=2)
    table = compile_features(features, (12, 10))
    ys, xs = rng.integers(0, 31, 30), rng.integers(0, 46, 30)
    ii, sq = batch_integrals(image[None])
    offsets = ys * 58 + xs
    vnf, ok = variance_norm(ii.ravel(), sq.ravel(), offsets, 58, (12, 10))
    crops = np.stack([image[y:y + 10, x:x + 12] for y, x in zip(ys, xs)])
    np.testing.assert_array_equal(window_values(ii.ravel(), offsets, 58, table, vnf), feature_values(crops, table))
    np.testing.assert_array_equal(ok, window_ok(crops))


def test_window_ok_is_opencvs_standard_deviation_rule():
    # OpenCV evaluates a window only when A * vnf < 0.1, i.e. the inner rectangle's std exceeds 10 grey levels
    inner = np.full((1, 24, 24), 100, np.uint8)
    for std, ok in ((9.0, False), (10.5, True)):
        patch = inner.copy()
        patch[0, 1:-1, 1:-1:2], patch[0, 1:-1, 2:-1:2] = 100 - std, 100 + std   # exact std, 22 x 22 inner
        assert window_ok(patch)[0] == ok
    assert not window_ok(inner)[0]                              # flat: nf = 0


def test_compiled_corners_are_merged():
    table = compile_features(enumerate_features((6, 6), kinds=("x2",))[:1]
                             + enumerate_features((6, 6), kinds=("x3",))[:1]
                             + enumerate_features((6, 6), kinds=("x2y2",))[:1], (6, 6))
    np.testing.assert_array_equal((table.coef != 0).sum(1), [6, 8, 9])
    np.testing.assert_array_equal(table.coef.sum(1), 0)        # zero-sum weights: corner coefficients cancel


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="outside the 6x6 window"):
        compile_features([HaarFeature(np.array([[4.0, 0, 3, 1, -1], [5, 0, 1, 1, 2]]))], (6, 6))
    with pytest.raises(ValueError, match="uint8"):
        feature_values(np.zeros((2, 6, 6), np.float32), enumerate_features((6, 6))[:3])
    with pytest.raises(ValueError, match="features are for a"):
        feature_values(np.zeros((2, 6, 6), np.uint8), compile_features(enumerate_features((5, 5)), (5, 5)))
    with pytest.raises(ValueError, match="kinds must be among"):
        enumerate_features((6, 6), kinds=("x4",))
