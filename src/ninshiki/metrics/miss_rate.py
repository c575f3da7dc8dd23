"""Miss rate against false positives per image (FPPI) and the log-average miss rate, the measures of
pedestrian detection (Dollár, Wojek, Schiele and Perona, "Pedestrian Detection: An Evaluation of the State
of the Art", PAMI 2012), as computed by Piotr Dollár's toolbox (bbGt.m: evalRes, compRoc; dbEval.m).

Matching is evalRes': per image, detections by decreasing score take the unmatched ground-truth box of
highest overlap >= 0.5 (ties to the later box), regular boxes before "ignore" regions; overlap with an
ignore region is intersection over the detection's area, and an ignore region absorbs any number of
detections. Here COCO crowd regions and VOC difficult objects are the ignore regions. Detections on ignore
regions and ignored ground truth leave the curve. The curve is then compRoc's: detections of all images
in decreasing score order (ties by image, then input order), FPPI = false positives / images and
miss rate = 1 - true positives / ground truth after each. The log-average miss rate is dbEval's: the
miss rate at nine FPPI evenly spaced in log space over [1e-2, 1e0], each read at the last point of the
curve whose FPPI does not exceed it (miss rate 1 before the first detection), averaged geometrically.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ninshiki.metrics.matching import (
    BoxSet,
    box_overlaps,
    greedy_match,
    group_pairs,
    pooled_by_class,
    ranks_in_group,
    score_order,
)

FPPI_REFERENCE = 10.0 ** np.linspace(-2.0, 0.0, 9)   # dbEval's 10.^(-2:.25:0)
FPPI_REFERENCE.setflags(write=False)


@dataclass(frozen=True)
class MissRateCurve:
    """One class's miss rate against FPPI, after each counted detection by decreasing score."""
    fppi: np.ndarray          # (n,) false positives per image
    miss_rate: np.ndarray     # (n,) 1 - recall
    scores: np.ndarray        # (n,)
    num_positives: int        # ground truth that counts (not ignored)
    log_average: float        # log-average miss rate over FPPI in [1e-2, 1e0]; NaN when num_positives is 0


def log_average_miss_rate(fppi: np.ndarray, miss_rate: np.ndarray,
                          reference: np.ndarray = FPPI_REFERENCE) -> float:
    """exp(mean(log(miss rate at each reference FPPI))), the miss rate floored at 1e-10 (dbEval.m).

    At each reference FPPI the miss rate is that of the last point with FPPI <= the reference, or 1 when
    even the first detection's FPPI exceeds it (no detection kept).

    Shape:
        - fppi, miss_rate: (n,) the curve, fppi non-decreasing; reference: (R,).
    """
    kept = np.searchsorted(fppi, reference, side="right")   # (R,) points with FPPI <= each reference
    at = np.concatenate([[1.0], miss_rate])[kept]
    return float(np.exp(np.mean(np.log(np.maximum(1e-10, at)))))


def dollar_match(boxes: BoxSet, *, iou_threshold: float = 0.5) -> np.ndarray:
    """evalRes' verdict on every detection: 1 true positive, 0 false positive, -1 on an ignore region.

    Shape:
        - Output: (D,) int8, in the order of `boxes.det_*`.
    """
    if not 0 < iou_threshold <= 1:
        raise ValueError(f"iou_threshold must lie in (0, 1], got {iou_threshold}")
    ignore = boxes.gt_crowd | boxes.gt_difficult
    group = boxes.det_group
    order = score_order(group, boxes.det_scores)
    pair_det, pair_gt = group_pairs(group[order], boxes.gt_group)
    overlap = box_overlaps(boxes.det_boxes[order][pair_det], boxes.gt_boxes[pair_gt], ignore[pair_gt])
    matched, on_ignored = greedy_match(ranks_in_group(group[order]), pair_det, pair_gt, overlap,
                                       thresholds=np.array([iou_threshold]), gt_ignore=ignore[None],
                                       gt_crowd=ignore)
    verdict = np.where(on_ignored[0, 0], -1, matched[0, 0].astype(np.int8)).astype(np.int8)  # (D,) sorted order
    out = np.empty_like(verdict)
    out[order] = verdict
    return out


def miss_rate_curves(boxes: BoxSet, *, iou_threshold: float = 0.5) -> list[MissRateCurve]:
    """Miss rate against FPPI of every class (index = class number); FPPI counts all `boxes.num_images`."""
    counted = ~(boxes.gt_crowd | boxes.gt_difficult)
    positives = np.bincount(boxes.gt_label[counted], minlength=boxes.num_classes)   # (K,)
    images = max(boxes.num_images, 1)
    out = []
    for (tp, scores), npos in zip(pooled_by_class(boxes, dollar_match(boxes, iou_threshold=iou_threshold)),
                                  positives.tolist()):
        fppi = np.cumsum(~tp) / images
        if npos:
            miss = 1.0 - np.cumsum(tp) / npos
            curve = MissRateCurve(fppi, miss, scores, int(npos), log_average_miss_rate(fppi, miss))
        else:
            curve = MissRateCurve(fppi, np.full(len(tp), np.nan), scores, 0, float("nan"))
        for array in (curve.fppi, curve.miss_rate, curve.scores):
            array.setflags(write=False)   # shared by DetectionMetric.curves() callers
        out.append(curve)
    return out
