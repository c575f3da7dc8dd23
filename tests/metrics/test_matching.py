"""The vectorised matching against direct transliterations of the loops it replaces, and pycocotools' IoU."""
from __future__ import annotations

import numpy as np
import pytest

from ninshiki.metrics.matching import box_overlaps, greedy_match, group_pairs, ranks_in_group, score_order


def test_group_pairs_lists_each_detection_with_its_group_in_input_order() -> None:
    pair_det, pair_gt = group_pairs(np.array([5, 3, 5, 9]), np.array([5, 3, 7, 5, 3]))
    assert pair_det.tolist() == [0, 0, 1, 1, 2, 2]
    assert pair_gt.tolist() == [0, 3, 1, 4, 0, 3]    # detection 3 (group 9) has no ground truth


def test_ranks_and_score_order() -> None:
    group, scores = np.array([2, 1, 2, 2, 1]), np.array([0.5, 0.9, 0.7, 0.5, 0.1])
    order = score_order(group, scores)
    assert order.tolist() == [1, 4, 2, 0, 3]          # by group, then score down; the tie keeps input order
    assert ranks_in_group(group[order]).tolist() == [0, 1, 0, 1, 2]


def test_box_overlaps_are_bitwise_pycocotools() -> None:
    mask_api = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(0)
    dt = np.concatenate([rng.uniform(0, 50, (40, 2)), rng.uniform(0, 40, (40, 2))], 1)
    gt = np.concatenate([rng.uniform(0, 50, (30, 2)), rng.uniform(0, 40, (30, 2))], 1)
    gt[:5] = dt[:5]                                   # identical boxes
    gt[5] = [dt[5, 0] + dt[5, 2], dt[5, 1], 10, 10]   # touching: zero width
    gt[6, 2:] = 0                                     # degenerate
    crowd = rng.random(30) < 0.3
    expected = np.asarray(mask_api.iou(dt.tolist(), gt.tolist(), crowd.astype(np.uint8).tolist()))
    d, g = np.meshgrid(np.arange(40), np.arange(30), indexing="ij")
    ours = box_overlaps(dt[d.ravel()], gt[g.ravel()], crowd[g.ravel()]).reshape(40, 30)
    np.testing.assert_array_equal(ours, expected)


def reference_match(ious: np.ndarray, threshold: float, ignore: np.ndarray, crowd: np.ndarray):
    """pycocotools' COCOeval.evaluateImg inner loop, transliterated, for one group and one threshold."""
    gt_order = np.argsort(ignore, kind="mergesort")
    matched_gt = np.zeros(len(ignore), bool)
    dtm, dt_ig = np.zeros(len(ious), bool), np.zeros(len(ious), bool)
    for d in range(len(ious)):
        best, m = min(threshold, 1 - 1e-10), -1
        for g in gt_order:
            if matched_gt[g] and not crowd[g]:
                continue
            if m > -1 and not ignore[m] and ignore[g]:
                break
            if ious[d, g] < best:
                continue
            best, m = ious[d, g], g
        if m > -1:
            dtm[d], dt_ig[d], matched_gt[m] = True, ignore[m], True
    return dtm, dt_ig


@pytest.mark.parametrize("seed", range(10))
def test_greedy_match_equals_the_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    num_groups = 12
    det_group = np.sort(rng.integers(0, num_groups, 120))       # detections by group, rank order within
    gt_group = rng.integers(0, num_groups, 40)
    gt_crowd = rng.random(40) < 0.2
    gt_ignore = gt_crowd[None] | (rng.random((3, 40)) < 0.25)   # three variants, like area ranges
    pair_det, pair_gt = group_pairs(det_group, gt_group)
    pair_iou = np.round(rng.random(len(pair_det)), 1)            # coarse: many ties and exact thresholds
    thresholds = np.array([0.3, 0.5, 0.8, 1.0])
    matched, on_ignored = greedy_match(ranks_in_group(det_group), pair_det, pair_gt, pair_iou,
                                       thresholds=thresholds, gt_ignore=gt_ignore, gt_crowd=gt_crowd)
    for group in range(num_groups):
        dets, gts = np.flatnonzero(det_group == group), np.flatnonzero(gt_group == group)
        ious = np.zeros((len(dets), len(gts)))
        for p in np.flatnonzero(np.isin(pair_det, dets)):
            ious[np.searchsorted(dets, pair_det[p]), np.searchsorted(gts, pair_gt[p])] = pair_iou[p]
        for t, threshold in enumerate(thresholds):
            for a in range(3):
                dtm, dt_ig = reference_match(ious, threshold, gt_ignore[a, gts], gt_crowd[gts])
                assert matched[t, a, dets].tolist() == dtm.tolist()
                assert on_ignored[t, a, dets].tolist() == dt_ig.tolist()


def test_greedy_match_without_pairs() -> None:
    matched, on_ignored = greedy_match(np.array([0, 1]), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0),
                                       thresholds=np.array([0.5]), gt_ignore=np.zeros((1, 0), bool),
                                       gt_crowd=np.zeros(0, bool))
    assert matched.shape == (1, 1, 2) and not matched.any() and not on_ignored.any()
