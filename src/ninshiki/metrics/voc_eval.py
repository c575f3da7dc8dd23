"""PASCAL VOC detection AP (Everingham et al., "The PASCAL Visual Object Classes (VOC) Challenge", IJCV
2010): VOC2007's 11-point interpolated AP and VOC2010-2012's all-point AP, at IoU 0.5.

Follows the MATLAB devkit (VOCevaldet.m, VOCap.m): all detections of a class in decreasing score order
(ties in image order, then in input order: MATLAB's sort is stable); each takes the ground-truth box of
its image and class it overlaps most, the first one on ties, *whether or not that box is already taken*;
it is a true positive if the overlap is >= 0.5 (the devkit's ``ovmax>=VOCopts.minoverlap``; the Python ports
in py-faster-rcnn and detectron2 use ``>``, which differs only at exactly 0.5) and the box is not yet taken,
nothing at all if that box is "difficult", and a false positive otherwise. Difficult objects do not count
towards recall. COCO crowd regions, which VOC has no notion of, are treated as difficult.

Boxes: our xyxy boxes already place VOC's 1-based inclusive pixel corners at x1 = xmin - 1, x2 = xmax, so
the plain continuous IoU here equals the devkit's "+1" IoU.

VOC2007's thresholds are k / 10 exactly; ports that step ``np.arange(0, 1.1, 0.1)`` use 0.30000000000000004,
0.6000000000000001 and 0.7000000000000001, and so skip a recall of exactly 0.3, 0.6 or 0.7.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ninshiki.metrics.matching import BoxSet, box_overlaps, group_pairs, pooled_by_class, score_order, segment_argmax

VOC07_RECALLS = np.arange(11) / 10   # 0, 0.1, ..., 1: each the double nearest k / 10
VOC07_RECALLS.setflags(write=False)


@dataclass(frozen=True)
class ClassPR:
    """One class's precision-recall curve at one IoU threshold, by decreasing score."""
    recall: np.ndarray      # (n,) after each counted detection (detections on difficult objects are left out)
    precision: np.ndarray   # (n,)
    scores: np.ndarray      # (n,) the score of each of those detections
    num_positives: int      # ground truth that counts: not difficult, not crowd
    ap07: float             # VOC2007 11-point AP; NaN when num_positives is 0
    ap12: float             # VOC2010-2012 all-point AP; NaN when num_positives is 0


def voc07_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC2007 11-point AP: mean over t = 0, 0.1, ..., 1 of the best precision at recall >= t (0 if none).

    Shape:
        - recall, precision: (n,) the raw curve, in detection order.
    """
    best = [float(precision[recall >= t].max()) if (recall >= t).any() else 0.0 for t in VOC07_RECALLS]
    return sum(best) / 11   # the devkit adds p / 11 eleven times: 1.0000000000000002 for a perfect detector


def voc12_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC2010-2012 AP: the area under the precision envelope (VOCap.m).

    Shape:
        - recall, precision: (n,) the raw curve, in detection order.
    """
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]       # precision envelope, from the right
    i = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1          # where recall changes
    return float(np.sum((mrec[i] - mrec[i - 1]) * mpre[i]))


def voc_match(boxes: BoxSet, *, iou_threshold: float = 0.5) -> np.ndarray:
    """The devkit's verdict on every detection: 1 true positive, 0 false positive, -1 on a difficult object.

    A detection's best box does not depend on which boxes are taken, so the matching is vectorised: a
    detection is a true positive when its best box qualifies and no higher-ranked detection of the same
    image and class has already claimed it.

    Shape:
        - Output: (D,) int8, in the order of `boxes.det_*`.
    """
    if not 0 < iou_threshold <= 1:
        raise ValueError(f"iou_threshold must lie in (0, 1], got {iou_threshold}")
    ignore = boxes.gt_difficult | boxes.gt_crowd
    group = boxes.det_group
    order = score_order(group, boxes.det_scores)     # (D,) by (class, image), then decreasing score
    pair_det, pair_gt = group_pairs(group[order], boxes.gt_group)
    iou = box_overlaps(boxes.det_boxes[order][pair_det], boxes.gt_boxes[pair_gt], np.zeros(len(pair_gt), bool))
    verdict = np.zeros(len(order), np.int8)          # (D,) in sorted order; 0 = false positive
    if len(pair_det):
        starts = np.flatnonzero(np.r_[True, pair_det[1:] != pair_det[:-1]])
        best, at = segment_argmax(iou, starts, last=False)   # the devkit's ovmax, jmax (first on ties)
        det, gt = pair_det[starts], pair_gt[at]
        hit = best >= iou_threshold
        verdict[det[hit & ignore[gt]]] = -1
        claims = np.flatnonzero(hit & ~ignore[gt])           # in score order within each group
        _, first = np.unique(gt[claims], return_index=True)
        verdict[det[claims[first]]] = 1
    out = np.empty_like(verdict)
    out[order] = verdict
    return out


def voc_evaluate(boxes: BoxSet, *, iou_threshold: float = 0.5) -> list[ClassPR]:
    """VOC precision-recall curves and AP of every class (index = class number)."""
    counted = ~(boxes.gt_difficult | boxes.gt_crowd)
    positives = np.bincount(boxes.gt_label[counted], minlength=boxes.num_classes)   # (K,) the devkit's npos
    out = []
    for (tp, scores), npos in zip(pooled_by_class(boxes, voc_match(boxes, iou_threshold=iou_threshold)),
                                  positives.tolist()):
        tp_sum = np.cumsum(tp).astype(np.float64)
        fp_sum = np.cumsum(~tp).astype(np.float64)
        precision = tp_sum / np.maximum(tp_sum + fp_sum, 1.0)
        recall = tp_sum / npos if npos else np.full(len(tp), np.nan)
        ap07, ap12 = (voc07_ap(recall, precision), voc12_ap(recall, precision)) if npos else (np.nan, np.nan)
        out.append(ClassPR(_frozen(recall), _frozen(precision), _frozen(scores), int(npos), float(ap07), float(ap12)))
    return out


def _frozen(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)   # shared by DetectionMetric.curves() callers
    return array


def mean_ap(values: list[float]) -> float:
    """Mean over the classes that have a value (ground truth); NaN if none does."""
    finite = [v for v in values if not np.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")
