"""VOC2007 / VOC2012 AP: a hand-worked example, the devkit's tie and threshold rules, and the vectorised
matching against a transliteration of the devkit's loop (VOCevaldet.m)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ninshiki.metrics.matching import BoxSet, box_overlaps, xyxy_to_xywh
from ninshiki.metrics.voc_eval import voc07_ap, voc12_ap, voc_evaluate, voc_match


def make_boxes(num_images: int, num_classes: int, dets: list[tuple], gts: list[tuple]) -> BoxSet:
    """dets: (image, label, xyxy, score); gts: (image, label, xyxy, difficult)."""
    return BoxSet(
        num_images=num_images, num_classes=num_classes,
        det_image=np.array([d[0] for d in dets], np.int64), det_label=np.array([d[1] for d in dets], np.int64),
        det_boxes=xyxy_to_xywh(np.array([d[2] for d in dets], float)),
        det_scores=np.array([d[3] for d in dets], float),
        gt_image=np.array([g[0] for g in gts], np.int64), gt_label=np.array([g[1] for g in gts], np.int64),
        gt_boxes=xyxy_to_xywh(np.array([g[2] for g in gts], float)), gt_crowd=np.zeros(len(gts), bool),
        gt_difficult=np.array([g[3] for g in gts], bool), gt_area=np.ones(len(gts)))


# Class 0 ("car"): image 0 has G1 [0,0,10,10], G2 [20,0,30,10] and a difficult G3 [40,0,50,10]; image 1 has
# G4 [0,0,10,10]. npos = 3. Class 1 has detections but no ground truth.
GTS = [(0, 0, [0, 0, 10, 10], False), (0, 0, [20, 0, 30, 10], False), (0, 0, [40, 0, 50, 10], True),
       (1, 0, [0, 0, 10, 10], False)]
DETS = [(0, 0, [0, 0, 10, 10], 0.9),       # d1: IoU 1 with G1                      -> TP
        (0, 0, [0, 0, 10, 10], 0.8),       # d2: G1 again, already taken            -> FP (duplicate)
        (0, 0, [40, 0, 50, 10], 0.7),      # d3: on the difficult G3                -> neither
        (1, 0, [0, 0, 10, 20], 0.6),       # d4: IoU 100 / 200 = 0.5 exactly with G4 -> TP (devkit: >=)
        (1, 0, [60, 60, 70, 70], 0.5),     # d5: overlaps nothing                   -> FP
        (0, 0, [21, 0, 31, 10], 0.4),      # d6: IoU 90 / 110 with G2               -> TP
        (0, 0, [100, 100, 110, 110], 0.3),  # d7                                     -> FP
        (0, 1, [0, 0, 10, 10], 0.9)]       # class 1, no ground truth
# Counted detections d1 d2 d4 d5 d6 d7:
#   cumulative TP   1    1    2    2    3    3
#   cumulative FP   0    1    1    2    2    3
#   recall         1/3  1/3  2/3  2/3   1    1
#   precision       1   1/2  2/3  1/2  3/5  1/2
# VOC07: best precision at recall >= t is 1 for t = 0, .1, .2, .3 (1/3 >= .3); 2/3 for t = .4, .5, .6;
#   3/5 for t = .7 .. 1.0:  AP = (4 * 1 + 3 * 2/3 + 4 * 3/5) / 11 = 8.4 / 11.
# VOC12: envelope at the recall steps 1/3, 2/3, 1 is 1, 2/3, 3/5:  AP = (1 + 2/3 + 3/5) / 3 = 34 / 45.


def test_hand_worked_example() -> None:
    boxes = make_boxes(2, 2, DETS, GTS)
    assert voc_match(boxes).tolist() == [1, 0, -1, 1, 0, 1, 0, 0]
    car, other = voc_evaluate(boxes)
    np.testing.assert_allclose(car.recall, [1 / 3, 1 / 3, 2 / 3, 2 / 3, 1, 1], rtol=0, atol=1e-15)
    np.testing.assert_allclose(car.precision, [1, 1 / 2, 2 / 3, 1 / 2, 3 / 5, 1 / 2], rtol=0, atol=1e-15)
    assert car.scores.tolist() == [0.9, 0.8, 0.6, 0.5, 0.4, 0.3]
    assert car.num_positives == 3
    assert car.ap07 == pytest.approx(8.4 / 11, abs=1e-15)
    assert car.ap12 == pytest.approx(34 / 45, abs=1e-15)
    assert other.num_positives == 0 and math.isnan(other.ap07) and math.isnan(other.ap12)


def test_ap_formulas_directly() -> None:
    recall, precision = np.array([0.3, 0.3, 0.6, 0.7]), np.array([1.0, 0.5, 0.6, 0.7])
    # VOC07: t = 0 .. .3 -> 1 (recall 0.3 counts at t = 0.3 exactly); .4 .. .6 -> 0.7; .7 -> 0.7; .8 .. 1 -> 0
    assert voc07_ap(recall, precision) == pytest.approx((4 * 1 + 4 * 0.7) / 11, abs=1e-15)
    # VOC12: steps at recall .3 (envelope 1), .6 (0.7), .7 (0.7): .3 * 1 + .3 * .7 + .1 * .7
    assert voc12_ap(recall, precision) == pytest.approx(0.3 + 0.21 + 0.07, abs=1e-15)
    assert voc07_ap(np.zeros(0), np.zeros(0)) == 0.0 and voc12_ap(np.zeros(0), np.zeros(0)) == 0.0


def test_devkit_takes_the_first_best_box_even_when_taken() -> None:
    # The second detection overlaps both boxes with IoU 0.6. The devkit's jmax is the first of them; if
    # that one is taken the detection is a false positive (COCO would take the free second box).
    first, second = [0, 0, 10, 10], [5, 0, 15, 10]
    dets = [(0, 0, [0, 0, 10, 10], 0.9), (0, 0, [2.5, 0, 12.5, 10], 0.8)]
    taken_first = make_boxes(1, 1, dets, [(0, 0, first, False), (0, 0, second, False)])
    assert voc_match(taken_first).tolist() == [1, 0]
    swapped = make_boxes(1, 1, dets, [(0, 0, second, False), (0, 0, first, False)])
    assert voc_match(swapped).tolist() == [1, 1]


def test_a_difficult_best_box_hides_a_regular_one() -> None:
    # Best overlap with a difficult box: ignored, even though a regular box also overlaps >= 0.5.
    gts = [(0, 0, [0, 0, 10, 10], True), (0, 0, [1, 0, 11, 10], False)]
    assert voc_match(make_boxes(1, 1, [(0, 0, [0, 0, 10, 10], 0.9)], gts)).tolist() == [-1]


def test_a_class_without_detections_scores_zero() -> None:
    (curve,) = voc_evaluate(make_boxes(1, 1, [], [(0, 0, [0, 0, 10, 10], False)]))
    assert curve.ap07 == 0.0 and curve.ap12 == 0.0 and curve.num_positives == 1


def reference_verdicts(boxes: BoxSet, threshold: float = 0.5) -> np.ndarray:
    """VOCevaldet.m per class: pooled detections by score (stable), each against its image's boxes."""
    verdict = np.zeros(len(boxes.det_scores), np.int8)
    for c in range(boxes.num_classes):
        dets = np.flatnonzero(boxes.det_label == c)
        dets = dets[np.lexsort((dets, boxes.det_image[dets], -boxes.det_scores[dets]))]
        taken: set[int] = set()
        for d in dets:
            gts = np.flatnonzero((boxes.gt_label == c) & (boxes.gt_image == boxes.det_image[d]))
            ovmax, jmax = -math.inf, -1
            for j in gts:
                ov = box_overlaps(boxes.det_boxes[d][None], boxes.gt_boxes[j][None], np.zeros(1, bool))[0]
                if ov > 0 and ov > ovmax:
                    ovmax, jmax = ov, j
            if ovmax >= threshold:
                if boxes.gt_difficult[jmax]:
                    verdict[d] = -1
                elif jmax not in taken:
                    verdict[d] = 1
                    taken.add(jmax)
    return verdict


@pytest.mark.parametrize("seed", range(8))
def test_matching_equals_the_devkit_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    gts = [(int(rng.integers(0, 6)), int(rng.integers(0, 3)), list(xy) + list(xy + rng.uniform(5, 30, 2)),
            bool(rng.random() < 0.2)) for xy in rng.uniform(0, 60, (25, 2))]
    dets = []
    for image, label, box, _ in gts:
        for _ in range(rng.integers(0, 4)):
            dets.append((image, label, list(np.array(box) + rng.uniform(-4, 4, 4)), float(np.round(rng.random(), 1))))
    dets += [(int(rng.integers(0, 6)), int(rng.integers(0, 3)), list(xy) + list(xy + 15), float(rng.random()))
             for xy in rng.uniform(0, 60, (15, 2))]
    boxes = make_boxes(6, 3, dets, gts)
    assert voc_match(boxes).tolist() == reference_verdicts(boxes).tolist()


def test_iou_threshold_is_checked() -> None:
    with pytest.raises(ValueError, match="iou_threshold"):
        voc_match(make_boxes(1, 1, [], []), iou_threshold=0.0)
