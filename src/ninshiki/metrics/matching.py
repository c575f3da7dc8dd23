"""Matching detections to ground truth, vectorised over images, classes and thresholds.

Every detection benchmark matches greedily, image by image and class by class: detections in order of
decreasing score each claim a ground-truth box they overlap enough. Detections of different (image, class)
groups never interact, so instead of one Python step per detection (pycocotools' `evaluateImg`), the loops
here take one array step per score *rank*: the best detection of every group at once, then the second, and
so on. The work is O(pairs of boxes in the same group); the Python steps are as many as the most
detections any one group has (100 under COCO's cap).

Boxes are COCO's `xywh` in float64 throughout (x, y = top-left corner, w, h = size in pixels), and
`box_overlaps` performs pycocotools' floating-point operations in pycocotools' order, so overlaps (and
therefore every match) are bitwise those of pycocotools.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BoxSet:
    """Detections and ground truth of a whole evaluation set, flattened into arrays.

    Images are numbered 0 .. num_images - 1 in evaluation order and classes 0 .. num_classes - 1. Where
    scores tie, the evaluators order detections by image number, then by their position in these arrays.
    """
    num_images: int
    num_classes: int
    det_image: np.ndarray    # (D,) int64, image number
    det_label: np.ndarray    # (D,) int64, class number
    det_boxes: np.ndarray    # (D, 4) float64, xywh
    det_scores: np.ndarray   # (D,) float64
    gt_image: np.ndarray     # (G,) int64
    gt_label: np.ndarray     # (G,) int64
    gt_boxes: np.ndarray     # (G, 4) float64, xywh
    gt_crowd: np.ndarray     # (G,) bool, COCO crowd regions
    gt_difficult: np.ndarray  # (G,) bool, VOC "difficult" objects
    gt_area: np.ndarray      # (G,) float64, COCO "area" (mask area, or box area when there is no mask)

    @property
    def det_group(self) -> np.ndarray:
        """(D,) int64 (class, image) group of each detection: class-major, so a class's groups are contiguous."""
        return self.det_label * self.num_images + self.det_image

    @property
    def gt_group(self) -> np.ndarray:
        """(G,) int64 (class, image) group of each ground-truth box."""
        return self.gt_label * self.num_images + self.gt_image


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) xyxy -> (N, 4) float64 xywh, as every COCO exporter writes them: (x1, y1, x2 - x1, y2 - y1)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def score_order(group: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Indices sorting detections by group, then by decreasing score; ties keep their input order.

    Shape:
        - group, scores: (D,). Output: (D,) int64.
    """
    return np.lexsort((np.arange(len(scores)), -scores, group))


def ranks_in_group(sorted_group: np.ndarray) -> np.ndarray:
    """(D,) 0-based position of each element within its run of equal values in a sorted group array."""
    n = len(sorted_group)
    if n == 0:
        return np.zeros(0, np.int64)
    starts = np.flatnonzero(np.r_[True, sorted_group[1:] != sorted_group[:-1]])
    return np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))


def group_pairs(det_group: np.ndarray, gt_group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (detection, ground truth) pair within the same group.

    Pairs are detection-major in the order of `det_group`; the pairs of one detection are contiguous and
    list its group's ground truth in input order.

    Shape:
        - det_group: (D,) int64; gt_group: (G,) int64.
        - Output: pair_det, pair_gt, each (P,) int64 indices, P = sum over detections of their group's G.
    """
    gt_order = np.argsort(gt_group, kind="stable")
    sorted_groups = gt_group[gt_order]
    start = np.searchsorted(sorted_groups, det_group, side="left")
    count = np.searchsorted(sorted_groups, det_group, side="right") - start
    total = int(count.sum())
    pair_det = np.repeat(np.arange(len(det_group)), count)
    offset = np.arange(total) - np.repeat(np.cumsum(count) - count, count)  # (P,) position within the group
    pair_gt = gt_order[np.repeat(start, count) + offset]
    return pair_det, pair_gt


def box_overlaps(det_xywh: np.ndarray, gt_xywh: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """Overlap of paired boxes: IoU, or intersection over the detection's area where `crowd` is set.

    The operations and their order are those of pycocotools' `bbIou` (maskApi.c), so the results are
    bitwise equal to pycocotools'. Boxes that do not overlap with positive width and height give 0.

    Shape:
        - det_xywh, gt_xywh: (P, 4) float64 xywh; crowd: (P,) bool. Output: (P,) float64.
    """
    dx, dy, dw, dh = det_xywh.T
    gx, gy, gw, gh = gt_xywh.T
    det_area, gt_area = dw * dh, gw * gh
    w = np.minimum(dw + dx, gw + gx) - np.maximum(dx, gx)
    h = np.minimum(dh + dy, gh + gy) - np.maximum(dy, gy)
    inter = w * h
    union = np.where(crowd, det_area, det_area + gt_area - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / union
    return np.where((w > 0) & (h > 0), iou, 0.0)


def segment_argmax(values: np.ndarray, starts: np.ndarray, *, last: bool) -> tuple[np.ndarray, np.ndarray]:
    """Maximum of each segment of the last axis and the position of its first (or last) occurrence.

    Shape:
        - values: (..., N); starts: (S,) increasing segment starts, starts[0] = 0, every segment non-empty.
        - Output: maxima (..., S) and positions (..., S) int64 indices into the last axis.
    """
    n = values.shape[-1]
    maxima = np.maximum.reduceat(values, starts, axis=-1)
    full = np.repeat(maxima, np.diff(np.r_[starts, n]), axis=-1)  # (..., N) each element's segment maximum
    position = np.arange(n)
    if last:
        found = np.maximum.reduceat(np.where(values == full, position, -1), starts, axis=-1)
    else:
        found = np.minimum.reduceat(np.where(values == full, position, n), starts, axis=-1)
    return maxima, found


def greedy_match(det_rank: np.ndarray, pair_det: np.ndarray, pair_gt: np.ndarray, pair_iou: np.ndarray, *,
                 thresholds: np.ndarray, gt_ignore: np.ndarray, gt_crowd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """pycocotools' `evaluateImg` matching (after Dollár's `bbGt.evalRes`) for all groups at once.

    In each group, detections in rank order take, among the ground truth not yet taken (crowd boxes are
    never used up), the box of highest overlap >= the threshold, ties going to the later box; a box that is
    ignored in a variant is taken only when no regular box qualifies. Each (threshold, variant) pair is an
    independent matching; variants are COCO's area ranges (a box outside the range is ignored).

    Args:
        det_rank: rank of each detection by score within its group, 0 = highest.
        pair_det, pair_gt, pair_iou: the pairs of `group_pairs` (detection-major) and their overlaps.
        thresholds: overlap thresholds; pycocotools caps them at 1 - 1e-10, so this does too.
        gt_ignore: ground truth ignored in each variant.
        gt_crowd: ground truth that may absorb any number of detections.

    Returns:
        matched: whether each detection matched a box; on_ignored: whether that box was an ignored one.

    Shape:
        - det_rank: (D,); pairs: (P,); thresholds: (T,); gt_ignore: (A, G); gt_crowd: (G,).
        - Output: matched, on_ignored: (T, A, D) bool.
    """
    num_t, num_a, num_d = len(thresholds), gt_ignore.shape[0], len(det_rank)
    matched = np.zeros((num_t * num_a, num_d), bool)       # (TA, D)
    on_ignored = np.zeros((num_t * num_a, num_d), bool)    # (TA, D)
    used = np.zeros((num_t * num_a, gt_ignore.shape[1]), bool)  # (TA, G)
    limit = np.repeat(np.minimum(thresholds, 1 - 1e-10), num_a)[:, None]  # (TA, 1)
    ignore = np.tile(gt_ignore, (num_t, 1))                # (TA, G)
    order = np.argsort(det_rank[pair_det], kind="stable")   # pairs by detection rank, detection-major within
    pair_det, pair_gt, pair_iou = pair_det[order], pair_gt[order], pair_iou[order]
    rank = det_rank[pair_det]
    bounds = np.searchsorted(rank, np.arange(int(rank.max(initial=-1)) + 2))
    for begin, end in itertools.pairwise(bounds):
        if begin == end:
            continue
        d, g, iou = pair_det[begin:end], pair_gt[begin:end], pair_iou[begin:end]
        starts = np.flatnonzero(np.r_[True, d[1:] != d[:-1]])
        free = ~(used[:, g] & ~gt_crowd[g])                   # (TA, n)
        ok = free & (iou >= limit)                             # (TA, n)
        ign = ignore[:, g]                                     # (TA, n)
        best_regular, at_regular = segment_argmax(np.where(ok & ~ign, iou, -1.0), starts, last=True)
        best_ignored, at_ignored = segment_argmax(np.where(ok & ign, iou, -1.0), starts, last=True)
        regular = best_regular >= 0                            # (TA, S)
        hit = regular | (best_ignored >= 0)
        row, segment = np.nonzero(hit)
        det = d[starts[segment]]
        matched[row, det] = True
        on_ignored[row, det] = ~regular[row, segment]
        used[row, g[np.where(regular, at_regular, at_ignored)[row, segment]]] = True
    return matched.reshape(num_t, num_a, num_d), on_ignored.reshape(num_t, num_a, num_d)


def pooled_by_class(boxes: BoxSet, verdict: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per class: (true positive flags, scores) of its counted detections in pooled score order.

    Pooled order is decreasing score, ties by image then input order. Detections with verdict -1 are
    left out; they change neither count.

    Shape:
        - verdict: (D,) int8 of 1 / 0 / -1. Output: num_classes pairs of (n_k,) arrays.
    """
    order = np.lexsort((np.arange(len(verdict)), boxes.det_image, -boxes.det_scores, boxes.det_label))
    order = order[verdict[order] >= 0]
    bounds = np.searchsorted(boxes.det_label[order], np.arange(boxes.num_classes + 1))
    return [(verdict[order[b:e]] == 1, boxes.det_scores[order[b:e]]) for b, e in itertools.pairwise(bounds)]
