"""Miss rate against FPPI and the log-average miss rate: hand-worked examples, and the matching against a
transliteration of Dollár's bbGt.evalRes loop."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ninshiki.metrics.matching import BoxSet, box_overlaps, xyxy_to_xywh
from ninshiki.metrics.miss_rate import FPPI_REFERENCE, dollar_match, log_average_miss_rate, miss_rate_curves


def make_boxes(num_images: int, dets: list[tuple], gts: list[tuple], num_classes: int = 1) -> BoxSet:
    """dets: (image, label, xyxy, score); gts: (image, label, xyxy, crowd, difficult)."""
    return BoxSet(
        num_images=num_images, num_classes=num_classes,
        det_image=np.array([d[0] for d in dets], np.int64), det_label=np.array([d[1] for d in dets], np.int64),
        det_boxes=xyxy_to_xywh(np.array([d[2] for d in dets], float)),
        det_scores=np.array([d[3] for d in dets], float),
        gt_image=np.array([g[0] for g in gts], np.int64), gt_label=np.array([g[1] for g in gts], np.int64),
        gt_boxes=xyxy_to_xywh(np.array([g[2] for g in gts], float)), gt_crowd=np.array([g[3] for g in gts], bool),
        gt_difficult=np.array([g[4] for g in gts], bool), gt_area=np.ones(len(gts)))


def test_reference_points() -> None:
    np.testing.assert_allclose(FPPI_REFERENCE, [10 ** (-2 + k / 4) for k in range(9)], rtol=1e-15)


def test_log_average_reads_the_last_point_at_or_below_each_reference() -> None:
    fppi = np.array([0.0, 0.02, 0.05, 0.09, 0.5, 2.0])
    miss = np.array([0.8, 0.6, 0.5, 0.4, 0.2, 0.1])
    # references .01 .0178 .0316 .0562 .1 .178 .316 .562 1 read miss rates .8 .8 .6 .5 .4 .4 .4 .2 .2
    expected = (0.8 ** 2 * 0.6 * 0.5 * 0.4 ** 3 * 0.2 ** 2) ** (1 / 9)
    assert log_average_miss_rate(fppi, miss) == pytest.approx(expected, rel=1e-14)


def test_log_average_before_the_first_point_and_at_zero() -> None:
    # The first detection is already at FPPI 0.5: the seven references below it read miss rate 1.
    expected = (0.5 * 0.25) ** (1 / 9)
    assert log_average_miss_rate(np.array([0.5, 1.0]), np.array([0.5, 0.25])) == pytest.approx(expected, rel=1e-14)
    assert log_average_miss_rate(np.zeros(0), np.zeros(0)) == 1.0                  # no detection at all
    assert log_average_miss_rate(np.array([0.0]), np.array([0.0])) == pytest.approx(1e-10)  # floored


# One class over four images (FPPI = false positives / 4).
#   image 0: ground truth A [0,0,10,10]; crowd region R [50,50,100,100]
#   image 1: ground truth B [0,0,10,10]; difficult D [30,0,40,10]
#   image 2: nothing;  image 3: ground truth C [0,0,10,10], never detected. npos = 3 (A, B, C).
GTS = [(0, 0, [0, 0, 10, 10], False, False), (0, 0, [50, 50, 100, 100], True, False),
       (1, 0, [0, 0, 10, 10], False, False), (1, 0, [30, 0, 40, 10], False, True),
       (3, 0, [0, 0, 10, 10], False, False)]
DETS = [(0, 0, [0, 0, 10, 10], 0.95),    # e1: A                                   -> TP
        (0, 0, [60, 60, 70, 70], 0.9),    # e2: inside R (intersection / own area 1) -> ignored
        (0, 0, [70, 70, 80, 80], 0.85),   # e3: inside R again, R absorbs any number -> ignored
        (2, 0, [0, 0, 10, 10], 0.8),      # e4: no ground truth                      -> FP
        (1, 0, [0, 0, 10, 10], 0.7),      # e5: B                                    -> TP
        (1, 0, [1, 0, 11, 10], 0.6),      # e6: B again, taken                       -> FP
        (1, 0, [32, 0, 38, 10], 0.55),    # e7: inside the difficult D               -> ignored
        (0, 0, [0, 0, 10, 10], 0.5)]      # e8: A again, taken                       -> FP
# Counted e1 e4 e5 e6 e8:  TP 1 1 2 2 2;  FP 0 1 1 2 3
#   FPPI       0   1/4  1/4  1/2  3/4
#   miss rate 2/3  2/3  1/3  1/3  1/3
# References .01 .. .178 (six) see only the first point: 2/3; .316, .562 and 1 see FPPI 1/4 or 1/2: 1/3.
#   log-average miss rate = ((2/3)**6 * (1/3)**3) ** (1/9)


def test_hand_worked_curve() -> None:
    boxes = make_boxes(4, DETS, GTS)
    assert dollar_match(boxes).tolist() == [1, -1, -1, 0, 1, 0, -1, 0]
    (curve,) = miss_rate_curves(boxes)
    assert curve.num_positives == 3
    np.testing.assert_allclose(curve.fppi, [0, 1 / 4, 1 / 4, 1 / 2, 3 / 4], rtol=0, atol=1e-15)
    np.testing.assert_allclose(curve.miss_rate, [2 / 3, 2 / 3, 1 / 3, 1 / 3, 1 / 3], rtol=0, atol=1e-15)
    assert curve.scores.tolist() == [0.95, 0.8, 0.7, 0.6, 0.5]
    assert curve.log_average == pytest.approx(((2 / 3) ** 6 * (1 / 3) ** 3) ** (1 / 9), rel=1e-14)


def test_regular_boxes_are_preferred_to_ignore_regions() -> None:
    gts = [(0, 0, [0, 0, 20, 20], True, False), (0, 0, [0, 0, 10, 10], False, False)]
    assert dollar_match(make_boxes(1, [(0, 0, [0, 0, 10, 10], 0.9)], gts)).tolist() == [1]


def test_a_class_without_ground_truth_is_nan() -> None:
    _, empty = miss_rate_curves(make_boxes(1, [(0, 1, [0, 0, 5, 5], 0.5)], [(0, 0, [0, 0, 5, 5], False, False)],
                                           num_classes=2))
    assert empty.num_positives == 0 and math.isnan(empty.log_average)


def reference_verdicts(boxes: BoxSet, threshold: float = 0.5) -> np.ndarray:
    """bbGt.evalRes per image and class, transliterated (ignore = crowd or difficult)."""
    verdict = np.zeros(len(boxes.det_scores), np.int8)
    ignore = boxes.gt_crowd | boxes.gt_difficult
    for c in range(boxes.num_classes):
        for i in range(boxes.num_images):
            dets = np.flatnonzero((boxes.det_label == c) & (boxes.det_image == i))
            dets = dets[np.argsort(-boxes.det_scores[dets], kind="stable")]
            gts = np.flatnonzero((boxes.gt_label == c) & (boxes.gt_image == i))
            gts = gts[np.argsort(ignore[gts], kind="stable")]              # ignore regions last
            state = np.where(ignore[gts], -1, 0)
            for d in dets:
                best, bstg, bstm = threshold, -1, 0
                for k, g in enumerate(gts):
                    if state[k] == 1:
                        continue
                    if bstm != 0 and state[k] == -1:
                        break
                    oa = box_overlaps(boxes.det_boxes[d][None], boxes.gt_boxes[g][None], ignore[g][None])[0]
                    if oa < best:
                        continue
                    best, bstg, bstm = oa, k, (1 if state[k] == 0 else -1)
                if bstm == 1:
                    state[bstg] = 1
                verdict[d] = bstm
    return verdict


@pytest.mark.parametrize("seed", range(8))
def test_matching_equals_evalres(seed: int) -> None:
    rng = np.random.default_rng(seed)
    gts = [(int(rng.integers(0, 5)), int(rng.integers(0, 2)), list(xy) + list(xy + rng.uniform(5, 40, 2)),
            bool(rng.random() < 0.15), bool(rng.random() < 0.15)) for xy in rng.uniform(0, 60, (25, 2))]
    dets = [(g[0], g[1], list(np.array(g[2]) + rng.uniform(-5, 5, 4)), float(np.round(rng.random(), 1)))
            for g in gts for _ in range(rng.integers(0, 4))]
    dets += [(int(rng.integers(0, 5)), int(rng.integers(0, 2)), list(xy) + list(xy + 12), float(rng.random()))
             for xy in rng.uniform(0, 60, (12, 2))]
    boxes = make_boxes(5, dets, gts, num_classes=2)
    assert dollar_match(boxes).tolist() == reference_verdicts(boxes).tolist()
