"""Discrete AdaBoost over stumps: the pre-sorted search against a brute-force one, the paper's weight updates and
training-error bound, and stage thresholds that reach the hit rate."""
import itertools
import math

import cv2
import numpy as np
import pytest

from ninshiki.classical.haar.adaboost import (
    DiscreteAdaBoost,
    SortedValues,
    best_stump,
    boost_stage,
    cascade_accepts,
    hit_threshold,
    passing_threshold,
)
from ninshiki.classical.haar.opencv_xml import read_cascade_xml


def _brute_force(values: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> tuple[float, int, float, bool]:
    """Every feature, every threshold between distinct values (float32 midpoints), both polarities."""
    best = (math.inf, -1, 0.0, True)
    for j in range(values.shape[1]):
        distinct = np.unique(values[:, j])
        for low, high in itertools.pairwise(distinct):
            threshold = np.float32((np.float64(low) + np.float64(high)) / 2)
            threshold = threshold if threshold > low else high
            below = values[:, j] < threshold
            for left in (True, False):
                error = weights[(below if left else ~below) != labels].sum()
                if error < best[0] - 1e-12:
                    best = (error, j, float(threshold), left)
    return best


@pytest.mark.parametrize("seed", range(6))
def test_best_stump_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    values = rng.standard_normal((70, 30)).astype(np.float32)
    values[:, :10] = np.round(values[:, :10])                  # ties: thresholds only between distinct values
    values[:, 10] = 1.5                                        # a constant feature has no threshold at all
    labels = rng.random(70) < 0.4
    weights = rng.random(70)
    weights /= weights.sum()
    feature, threshold, left, error = best_stump(SortedValues(values), np.where(labels, weights, -weights))
    ref_error, ref_feature, ref_threshold, ref_left = _brute_force(values, labels, weights)
    assert (feature, threshold, left) == (ref_feature, ref_threshold, ref_left)
    assert error == pytest.approx(ref_error, abs=1e-12)


def test_presorted_prefix_gives_the_same_order():
    rng = np.random.default_rng(3)
    values = np.asfortranarray(rng.standard_normal((90, 40)).astype(np.float32))
    values[:, :5] = np.round(values[:, :5])
    prefix = np.argsort(values[:35].T, axis=1, kind="stable")
    plain, fast = SortedValues(values, chunk=16), SortedValues(values, prefix_order=prefix, chunk=16)
    np.testing.assert_array_equal(plain.valid, fast.valid)
    sorted_plain = np.take_along_axis(values.T, plain.order, axis=1)
    np.testing.assert_array_equal(sorted_plain, np.take_along_axis(values.T, fast.order, axis=1))
    assert (np.sort(fast.order, axis=1) == np.arange(90)).all()      # a permutation per feature


def test_training_error_falls_within_the_adaboost_bound():
    rng = np.random.default_rng(4)
    values = rng.standard_normal((300, 12)).astype(np.float32)
    labels = values[:, 0] + values[:, 1] - values[:, 2] > 0.5     # additive, not a single stump's problem
    booster = DiscreteAdaBoost(values, labels)
    initial = booster.weights.copy()                          # the paper's 1/(2l), 1/(2m)
    assert initial.sum() == pytest.approx(1.0) and initial[labels].sum() == pytest.approx(0.5)
    scores, bound, errors = np.zeros(300), 1.0, []
    for _ in range(40):
        stump = booster.step()
        scores += booster.outputs(stump)
        bound *= 2 * math.sqrt(stump.error * (1 - stump.error))
        errors.append(float(initial[(scores >= 0) != labels].sum()))   # the strong classifier, threshold 0
        assert errors[-1] <= bound + 1e-12                    # Freund and Schapire's bound on the training error
        assert stump.left == -stump.right and abs(stump.left) == pytest.approx(
            0.5 * math.log((1 - stump.error) / stump.error), rel=1e-6)   # leaves +-alpha/2, float32
    assert errors[-1] < 0.5 * errors[0] and errors[-1] < 0.1


def test_reweighting_is_the_papers():
    values = np.array([[0.0], [1.0], [2.0], [3.0]], np.float32)
    labels = np.array([True, True, False, True])
    booster = DiscreteAdaBoost(values, labels)
    stump = booster.step()                                    # best: value < 1.5 -> positive; sample 3 wrong
    assert stump.threshold == 1.5 and stump.left > 0 > stump.right
    eps = 1 / 6                                               # weights 1/6, 1/6, 1/2, 1/6
    assert stump.error == pytest.approx(eps)
    beta = eps / (1 - eps)
    expected = np.array([1 / 6 * beta, 1 / 6 * beta, 1 / 2 * beta, 1 / 6])
    np.testing.assert_allclose(booster.weights, expected)


def test_hit_threshold_keeps_the_hit_rate():
    scores = np.random.default_rng(5).standard_normal(1000)
    for rate in (0.9, 0.995, 1.0):
        threshold = hit_threshold(scores, rate)
        assert np.mean(scores >= threshold) >= rate
        assert threshold == np.float32(threshold)             # what OpenCV's XML holds
        assert np.mean(scores >= np.nextafter(np.float32(threshold), np.float32(np.inf))) < rate or rate == 1.0


def test_stage_reaches_its_targets():
    rng = np.random.default_rng(6)
    labels = np.arange(600) < 200
    values = rng.standard_normal((600, 20)).astype(np.float32)
    values[labels, :4] += 1.0                                 # four weak, noisy cues
    stage = boost_stage(values, labels, min_hit_rate=0.99, max_false_alarm=0.3, max_weak=50)
    assert stage.hit_rate >= 0.99 and stage.false_alarm <= 0.3 and 1 < len(stage.stumps) < 50
    booster = DiscreteAdaBoost(values, labels)
    sums = sum(booster.outputs(s) for s in stage.stumps)
    assert np.mean(sums[labels] >= passing_threshold(stage.threshold)) == stage.hit_rate
    assert np.mean(sums[~labels] >= passing_threshold(stage.threshold)) == stage.false_alarm


def test_degenerate_input_is_refused():
    with pytest.raises(ValueError, match="need positives and negatives"):
        DiscreteAdaBoost(np.zeros((3, 2), np.float32), np.ones(3, bool))
    booster = DiscreteAdaBoost(np.ones((4, 2), np.float32), np.array([True, False, True, False]))
    assert booster.step() is None                             # no feature separates anything


def test_evaluator_equals_opencv_on_its_frontal_face_cascade():
    # 25 stages, 2913 features with -1/2/3 weights: a window-sized patch is accepted by one iff by the other
    skimage_data = pytest.importorskip("skimage.data")
    path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
    faces = np.round(skimage_data.lfw_subset() * 255).astype(np.uint8)   # 100 faces, 100 non-faces, 25 x 25
    image = cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2GRAY)
    rng = np.random.default_rng(7)
    sizes = rng.integers(24, 220, 1000)
    corners = rng.integers(0, 512 - sizes[:, None], (1000, 2))
    patches = np.stack([cv2.resize(c, (24, 24), interpolation=cv2.INTER_AREA) for c in faces]
                       + [cv2.resize(image[y:y + s, x:x + s], (24, 24), interpolation=cv2.INTER_AREA)
                          for s, (y, x) in zip(sizes, corners)])
    opencv = cv2.CascadeClassifier(path)
    theirs = np.array([len(opencv.detectMultiScale(p, 1.1, 0)) == 1 for p in patches])
    ours = cascade_accepts(read_cascade_xml(path), patches)
    assert 10 <= theirs.sum() <= len(patches) - 10
    np.testing.assert_array_equal(ours, theirs)
