"""Local-matching metrics: hand-worked cases (identity and shift homographies) and brute-force references."""
import math

import numpy as np
import pytest

from ninshiki.metrics.local_matching import (
    MatchingMetric,
    corner_error,
    homography_accuracy,
    matching_precision,
    mean_matching_accuracy,
    one_to_one_pairs,
    repeatability,
)

IDENTITY = np.eye(3)


def shift(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def test_matching_precision_counts_reprojection_errors_strictly_below_the_threshold() -> None:
    xy_a = np.zeros((5, 2))
    xy_b = np.array([[0, 0], [0.5, 0], [0, 2.9], [3.0, 0], [10, 0]])
    assert matching_precision(xy_a, xy_b, IDENTITY) == pytest.approx(3 / 5)          # 3.0 is not < 3
    assert matching_precision(xy_a, xy_b, IDENTITY, threshold=1) == pytest.approx(2 / 5)
    points = np.random.default_rng(0).uniform(0, 100, (20, 2))
    assert matching_precision(points, points + (5, -2), shift(5, -2)) == 1.0
    assert matching_precision(points, points + (5, -2), 3.7 * shift(5, -2)) == 1.0   # H and 3.7 H: one map
    assert matching_precision(points, points, shift(5, -2)) == 0.0
    assert matching_precision(np.zeros((0, 2)), np.zeros((0, 2)), IDENTITY) == 0.0   # no match is right


def test_matching_precision_equals_a_loop_over_homogeneous_coordinates() -> None:
    rng = np.random.default_rng(1)
    matrix = np.array([[1.1, 0.1, 4.0], [-0.05, 0.95, 2.0], [2e-4, 1e-4, 1.0]])
    xy_a = rng.uniform(0, 200, (300, 2))
    xy_b = np.array([(matrix @ [x, y, 1])[:2] / (matrix @ [x, y, 1])[2] for x, y in xy_a]) + rng.normal(0, 3, (300, 2))
    for threshold in (1, 3, 5):
        expected = sum(math.dist((matrix @ [*a, 1])[:2] / (matrix @ [*a, 1])[2], b) < threshold
                       for a, b in zip(xy_a, xy_b)) / len(xy_a)
        assert matching_precision(xy_a, xy_b, matrix, threshold=threshold) == pytest.approx(expected)


def test_mean_matching_accuracy_averages_pairs_and_scores_empty_pairs_zero() -> None:
    result = mean_matching_accuracy([np.array([0.5, 2.0, 4.0]), np.zeros(0)])
    assert result == pytest.approx({1: 1 / 6, 3: 1 / 3, 5: 1 / 2})
    assert math.isnan(mean_matching_accuracy([], thresholds=(3,))[3])


def test_repeatability_hand_worked() -> None:
    kp_a = np.array([[1, 1], [5, 5], [8, 8], [20, 20]])          # the last is outside b
    kp_b = np.array([[1.5, 1], [5, 9], [8, 8.2]])
    # visible: 3 and 3; within 3 px: (1,1)-(1.5,1) and (8,8)-(8,8.2); (5,5)-(5,9) is 4 px away
    assert repeatability(kp_a, kp_b, IDENTITY, (10, 10)) == pytest.approx(2 / 3)
    assert repeatability(kp_a, kp_b, IDENTITY, (10, 10), threshold=5) == pytest.approx(1.0)
    # b's keypoint at x = 2 maps back to x = -3 in a: outside a, not counted when a's shape is known
    kp_b = np.array([[2.0, 5.0], [7.0, 5.0]])
    assert repeatability(np.array([[2.0, 5.0]]), kp_b, shift(5, 0), (10, 10)) == 1.0   # 1 pair / min(1, 2)
    assert repeatability(np.array([[2.0, 5.0], [3.0, 1.0]]), kp_b, shift(5, 0), (10, 10), shape_a=(10, 10)) == 1.0
    assert repeatability(np.array([[2.0, 5.0], [3.0, 1.0]]), kp_b, shift(5, 0), (10, 10)) == 0.5
    assert repeatability(np.zeros((0, 2)), kp_b, IDENTITY, (10, 10)) == 0.0


def test_one_to_one_pairs_take_the_closest_first() -> None:
    a = np.array([[0.0, 0.0], [1.0, 0.0], [9.0, 9.0]])
    b = np.array([[0.4, 0.0], [0.9, 0.0]])
    # (1,0)-(0.9,0) is closest (0.1), then (0,0)-(0.4,0) (0.4); (0,0)-(0.9,0) and (1,0)-(0.4,0) are left out
    np.testing.assert_array_equal(one_to_one_pairs(a, b, 3.0), [[1, 1], [0, 0]])
    assert repeatability(np.array([[0.0, 0.0], [1.0, 0.0]]), np.array([[0.4, 0.0]]), IDENTITY, (5, 5)) == 1.0
    assert one_to_one_pairs(a, np.zeros((0, 2)), 3.0).shape == (0, 2)


def brute_force_repeatability(kp_a, kp_b, matrix, shape_a, shape_b, threshold):
    def inside(p, shape):
        return -0.5 <= p[0] <= shape[1] - 0.5 and -0.5 <= p[1] <= shape[0] - 0.5

    def apply(m, p):
        x, y, w = m @ [p[0], p[1], 1.0]
        return (x / w, y / w)

    mapped = [q for q in (apply(matrix, p) for p in kp_a) if inside(q, shape_b)]
    inverse = np.linalg.inv(matrix)
    seen = [p for p in kp_b if inside(apply(inverse, p), shape_a)]
    candidates = sorted((math.dist(p, q), i, j) for i, p in enumerate(mapped) for j, q in enumerate(seen)
                        if math.dist(p, q) < threshold)
    used_a, used_b, count = set(), set(), 0
    for _, i, j in candidates:
        if i not in used_a and j not in used_b:
            used_a.add(i), used_b.add(j)
            count += 1
    return count / min(len(mapped), len(seen))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_repeatability_equals_a_brute_force_greedy_search(seed: int) -> None:
    rng = np.random.default_rng(seed)
    matrix = np.array([[0.9, -0.1, 12.0], [0.15, 1.05, -8.0], [3e-4, -2e-4, 1.0]])
    kp_a = rng.uniform(-0.5, 99.5, (150, 2))                                     # a: 80 x 100
    kp_a[:, 1] *= 0.8
    truth = np.array([(matrix @ [x, y, 1])[:2] / (matrix @ [x, y, 1])[2] for x, y in kp_a])
    kp_b = np.concatenate([truth[:100] + rng.normal(0, 1.5, (100, 2)), rng.uniform(0, 90, (60, 2))])
    for threshold in (1.0, 3.0):
        expected = brute_force_repeatability(kp_a, kp_b, matrix, (80, 100), (90, 90), threshold)
        got = repeatability(kp_a, kp_b, matrix, (90, 90), shape_a=(80, 100), threshold=threshold)
        assert got == pytest.approx(expected) and 0 < got < 1


def test_corner_error_and_homography_accuracy() -> None:
    shape = (101, 201)                                           # corners (0,0) (200,0) (200,100) (0,100)
    assert corner_error(shift(5, 5), shift(5, 5), shape) == 0.0
    assert corner_error(shift(2, 0), IDENTITY, shape) == pytest.approx(2.0)
    scaled = np.diag([1.01, 1.01, 1.0])
    assert corner_error(scaled, IDENTITY, shape) == pytest.approx((0 + 2 + math.hypot(2, 1) + 1) / 4)
    assert homography_accuracy(shift(2, 0), IDENTITY, shape, threshold=3)
    assert not homography_accuracy(shift(2, 0), IDENTITY, shape, threshold=1)
    assert not homography_accuracy(shift(3, 0), IDENTITY, shape, threshold=3)     # strictly below
    assert corner_error(None, IDENTITY, shape) == math.inf and not homography_accuracy(None, IDENTITY, shape)
    horizon = np.array([[1.0, 0, 0], [0, 1, 0], [-1 / 200, 0, 1]])               # sends x = 200 to infinity
    assert corner_error(horizon, IDENTITY, shape) == math.inf


def test_matching_metric_hand_worked_over_two_pairs() -> None:
    metric = MatchingMetric(threshold=3)
    assert all(math.isnan(v) for v in metric.compute().values())
    pair_a, pair_b = np.array([[1, 1], [5, 5], [8, 8]]), np.array([[1.5, 1], [5, 9], [8, 8.2]])
    row = metric.update(keypoints_a=pair_a, keypoints_b=pair_b, matches_a=pair_a, matches_b=pair_b, H=IDENTITY,
                        shape_a=(10, 10), shape_b=(10, 10), H_est=IDENTITY, seconds=0.25, name="first")
    assert row["name"] == "first" and row["matches"] == 3 and row["correct"] == 2 and row["corner_error"] == 0
    metric.update(keypoints_a=np.array([[2, 2]]), keypoints_b=np.array([[2, 2]]), matches_a=np.zeros((0, 2)),
                  matches_b=np.zeros((0, 2)), H=IDENTITY, shape_a=(10, 10), shape_b=(10, 10), H_est=None,
                  seconds=0.75)
    expected = {"matching_precision": 2 / 3, "repeatability": (2 / 3 + 1) / 2, "mma@1": 1 / 3, "mma@3": 1 / 3,
                "mma@5": 1 / 2, "homography_acc@3": 0.5, "homography_acc@5": 0.5, "mean_matches": 1.5,
                "seconds_per_pair": 0.5}
    result = metric.compute()
    assert list(result) == list(expected) and result == pytest.approx(expected)
    assert metric.rows[1]["name"] == "1" and metric.rows[1]["corner_error"] == math.inf
    metric.reset()
    assert metric.rows == [] and math.isnan(metric.compute()["mma@3"])
