"""COCO detection metrics (Lin et al., "Microsoft COCO: Common Objects in Context", ECCV 2014), bit for bit
those of pycocotools' `COCOeval` with its default detection parameters, and about 20x faster.

A NumPy port rather than a call into a library, for two measured reasons (benchmarks/coco_eval_speed.py):
pycocotools takes over two minutes for 5,000 images with 100 detections each and is only a test
dependency; faster-coco-eval is fast, but where pycocotools' precision tp / (tp + fp + eps) gives 1 - 2**-52
(one true positive, no false one) its C++ accumulation gives 1.0, so on most sets its summaries differ from
pycocotools' in the 16th digit. Here the matching is `matching.greedy_match`
(pycocotools' `evaluateImg`, vectorised) and `_accumulate` / `_summarize` repeat pycocotools'
floating-point operations in pycocotools' order; tests/metrics/test_coco_eval.py checks equality with `==`.
faster-coco-eval's mask API supplies the mask IoUs of `iou_type="segm"` (coco_files.py).

Conventions (pycocotools'): boxes are `xywh`; a detection's area is w * h; a ground-truth box is ignored
in an area range when it is a crowd region or its "area" field lies outside the range; unmatched
detections outside the range are ignored too; at most 100 detections per image and class are evaluated.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ninshiki.metrics.coco_files import mask_overlaps, read_coco
from ninshiki.metrics.matching import BoxSet, box_overlaps, greedy_match, group_pairs, ranks_in_group, score_order


def _frozen(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


# pycocotools' Params.setDetParams, expression for expression (np.arange would drift; so does rounding these).
IOU_THRESHOLDS = _frozen(np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1, endpoint=True))  # (10,)
RECALL_THRESHOLDS = _frozen(np.linspace(.0, 1.00, int(np.round((1.00 - .0) / .01)) + 1, endpoint=True))  # (101,)
MAX_DETS = (1, 10, 100)
AREA_RANGES = _frozen(np.array([[0 ** 2, 1e5 ** 2], [0 ** 2, 32 ** 2], [32 ** 2, 96 ** 2], [96 ** 2, 1e5 ** 2]]))
AREA_LABELS = ("all", "small", "medium", "large")
# COCOeval.stats in order: AP, AP50, AP75, AP by area; AR at 1, 10, 100 detections; AR by area.
STAT_NAMES = ("map", "map50", "map75", "map_small", "map_medium", "map_large",
              "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large")
_STAT_QUERIES = ((1, None, "all", 100), (1, .5, "all", 100), (1, .75, "all", 100), (1, None, "small", 100),
                 (1, None, "medium", 100), (1, None, "large", 100), (0, None, "all", 1), (0, None, "all", 10),
                 (0, None, "all", 100), (0, None, "small", 100), (0, None, "medium", 100), (0, None, "large", 100))

# (det indices, gt indices) -> overlaps, for overlaps other than box IoU (masks).
PairOverlaps = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class CocoEvaluation:
    """pycocotools' accumulated arrays and what is derived from them.

    `precision[t, r, k, a, m]` is the interpolated precision at IoU threshold t, recall threshold r, class k,
    area range a and detection cap m; `recall[t, k, a, m]` the recall reached. Both are -1 where class k has
    no ground truth counted in area range a, exactly as in pycocotools' `COCOeval.eval`.
    """
    precision: np.ndarray          # (10, 101, K, 4, 3)
    recall: np.ndarray             # (10, K, 4, 3)
    category_ids: list[int]        # K
    category_names: list[str]      # K

    def stats(self) -> np.ndarray:
        """(12,) pycocotools' `COCOeval.stats` (-1 where nothing was counted), in `STAT_NAMES` order."""
        return np.array([_summarize(self.precision, self.recall, *query) for query in _STAT_QUERIES])

    def summary(self) -> dict[str, float]:
        """`STAT_NAMES` -> value; NaN where pycocotools says -1 (no ground truth at all, or none in a range)."""
        return {name: (float(v) if v > -1 else float("nan")) for name, v in zip(STAT_NAMES, self.stats())}

    def class_ap(self, k: int, iou: float | None = None) -> float:
        """AP of class k at all IoU thresholds (or one), all areas, 100 detections; NaN without ground truth."""
        p = self.precision[:, :, k, 0, -1] if iou is None else self.precision[IOU_THRESHOLDS == iou, :, k, 0, -1]
        p = p[p > -1]
        return float(np.mean(p)) if p.size else float("nan")

    def per_class(self) -> dict[str, float]:
        """``ap/<name>`` (AP@[.5:.95]) and ``ap50/<name>`` (AP@.5) of every class."""
        out = {f"ap/{name}": self.class_ap(k) for k, name in enumerate(self.category_names)}
        out.update({f"ap50/{name}": self.class_ap(k, .5) for k, name in enumerate(self.category_names)})
        return out


def _summarize(precision: np.ndarray, recall: np.ndarray, ap: int, iou: float | None, area: str,
               max_dets: int) -> float:
    """pycocotools' `COCOeval.summarize._summarize`, same indexing, so the same summation order."""
    aind = [i for i, label in enumerate(AREA_LABELS) if label == area]
    mind = [i for i, m in enumerate(MAX_DETS) if m == max_dets]
    s = precision if ap == 1 else recall
    if iou is not None:
        s = s[np.where(iou == IOU_THRESHOLDS)[0]]
    s = s[:, :, :, aind, mind] if ap == 1 else s[:, :, aind, mind]
    valid = s[s > -1]
    return -1.0 if len(valid) == 0 else float(np.mean(valid))


def evaluate_boxes(boxes: BoxSet, *, category_ids: Sequence[int] | None = None,
                   category_names: Sequence[str] | None = None, det_area: np.ndarray | None = None,
                   overlaps: PairOverlaps | None = None) -> CocoEvaluation:
    """COCO evaluation of flattened boxes: pycocotools' evaluate + accumulate.

    Args:
        boxes: detections and ground truth of `boxes.num_images` images; class k is `category_ids[k]`.
        category_ids, category_names: per class, for the report; default 1 .. K and "1" .. "K". The means
            run over classes in this order; pycocotools' order is increasing category id.
        det_area: each detection's area for the area ranges; default w * h of its box (pycocotools' bbox
            results). Shape (D,).
        overlaps: computes the overlaps of (detection index, ground-truth index) pairs; default box IoU,
            with intersection over detection area for crowd regions.
    """
    k = boxes.num_classes
    ids = list(range(1, k + 1)) if category_ids is None else [int(i) for i in category_ids]
    names = [str(i) for i in ids] if category_names is None else [str(n) for n in category_names]
    group = boxes.det_group
    order = score_order(group, boxes.det_scores)
    rank = ranks_in_group(group[order])
    keep = order[rank < MAX_DETS[-1]]       # (D',) evaluateImg's dt[0:maxDets[-1]] of every group
    rank = rank[rank < MAX_DETS[-1]]
    pair_det, pair_gt = group_pairs(group[keep], boxes.gt_group)
    if overlaps is None:
        iou = box_overlaps(boxes.det_boxes[keep][pair_det], boxes.gt_boxes[pair_gt], boxes.gt_crowd[pair_gt])
    else:
        iou = overlaps(keep[pair_det], pair_gt)
    low, high = AREA_RANGES[:, :1], AREA_RANGES[:, 1:]     # (A, 1)
    gt_ignore = boxes.gt_crowd[None] | (boxes.gt_area[None] < low) | (boxes.gt_area[None] > high)  # (A, G)
    matched, on_ignored = greedy_match(rank, pair_det, pair_gt, iou, thresholds=IOU_THRESHOLDS,
                                       gt_ignore=gt_ignore, gt_crowd=boxes.gt_crowd)
    area = boxes.det_boxes[keep, 2] * boxes.det_boxes[keep, 3] if det_area is None else det_area[keep]
    outside = (area[None] < low) | (area[None] > high)      # (A, D')
    ignored = on_ignored | (~matched & outside[None])       # (T, A, D')
    positives = np.stack([np.bincount(boxes.gt_label[~ig], minlength=k) for ig in gt_ignore], axis=1)  # (K, A)
    precision, recall = _accumulate(boxes.det_label[keep], boxes.det_image[keep], rank, boxes.det_scores[keep],
                                    matched, ignored, positives)
    return CocoEvaluation(precision, recall, ids, names)


def _accumulate(label: np.ndarray, image: np.ndarray, rank: np.ndarray, score: np.ndarray, matched: np.ndarray,
                ignored: np.ndarray, positives: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """pycocotools' `COCOeval.accumulate` without the per-image records.

    pycocotools concatenates each image's score-sorted detections in image order and merge-sorts them by
    score; sorting by (class, -score, image, rank) is the same order.

    Shape:
        - label, image, rank, score: (D,); matched, ignored: (T, A, D) bool; positives: (K, A) counts.
        - Output: precision (T, R, K, A, M), recall (T, K, A, M).
    """
    num_t, num_r, (num_k, num_a), num_m = len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS), positives.shape, len(MAX_DETS)
    precision = -np.ones((num_t, num_r, num_k, num_a, num_m))
    recall = -np.ones((num_t, num_k, num_a, num_m))
    order = np.lexsort((rank, image, -score, label))
    bounds = np.searchsorted(label[order], np.arange(num_k + 1))
    for k in range(num_k):
        if not positives[k].any():
            continue   # no ground truth counted in any range: pycocotools leaves -1
        in_class = order[bounds[k]:bounds[k + 1]]
        dtm, dt_ig = matched[:, :, in_class], ignored[:, :, in_class]     # (T, A, n)
        tps, fps = dtm & ~dt_ig, ~dtm & ~dt_ig
        for m, max_det in enumerate(MAX_DETS):
            sel = rank[in_class] < max_det
            tp_sum = np.cumsum(tps[:, :, sel], axis=2).astype(dtype=float)   # (T, A, n_m)
            fp_sum = np.cumsum(fps[:, :, sel], axis=2).astype(dtype=float)
            for a in range(num_a):
                if positives[k, a]:
                    precision[:, :, k, a, m], recall[:, k, a, m] = _curve(tp_sum[:, a], fp_sum[:, a],
                                                                          int(positives[k, a]))
    return precision, recall


def _curve(tp: np.ndarray, fp: np.ndarray, npig: int) -> tuple[np.ndarray, np.ndarray]:
    """Interpolated precision at the recall thresholds, and final recall, per IoU threshold (rows)."""
    num_t, nd = tp.shape
    rc = tp / npig
    pr = tp / (fp + tp + np.spacing(1))
    q = np.zeros((num_t, len(RECALL_THRESHOLDS)))
    if nd == 0:
        return q, np.zeros(num_t)
    envelope = np.maximum.accumulate(np.ascontiguousarray(pr[:, ::-1]), axis=1)[:, ::-1]  # pycocotools' backward max
    for t in range(num_t):
        inds = np.searchsorted(rc[t], RECALL_THRESHOLDS, side="left")
        inside = inds < nd   # pycocotools stops at the first index past the end, leaving zeros
        q[t, inside] = envelope[t, inds[inside]]
    return q, rc[:, -1]


def evaluate_coco(gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]], *,
                  iou_type: str = "bbox") -> CocoEvaluation:
    """pycocotools' `COCOeval(COCO(gt), COCO.loadRes(results), iou_type)` evaluate + accumulate.

    Args:
        gt: a COCO ground-truth dict ("images", "annotations", "categories"), e.g. ``json.load`` of
            instances_val2017.json. Not modified.
        results: COCO result records ("image_id", "category_id", "score", and "bbox" as xywh, or
            "segmentation"). Not modified.
        iou_type: "bbox" or "segm" (mask IoU; ground truth needs "segmentation").

    Equal to pycocotools whenever its annotation ids are unique and nonzero (pycocotools marks matches by
    id, so an id 0 reads as unmatched there; here ids play no part).
    """
    data = read_coco(gt, results, iou_type=iou_type)
    return evaluate_boxes(data.boxes, category_ids=data.category_ids, category_names=data.category_names,
                          det_area=data.det_area, overlaps=mask_overlaps(data) if iou_type == "segm" else None)


def coco_evaluate(gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]], *,
                  iou_type: str = "bbox") -> dict[str, float]:
    """COCO metrics of a result list against a ground-truth dict, as flat floats.

    Returns `STAT_NAMES` (pycocotools' 12 summary numbers, NaN where it says -1) and, per category name,
    ``ap/<name>`` (AP@[.5:.95]) and ``ap50/<name>`` (AP@.5), NaN for categories without ground truth.
    """
    evaluation = evaluate_coco(gt, results, iou_type=iou_type)
    return {**evaluation.summary(), **evaluation.per_class()}
