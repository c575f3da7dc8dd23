"""COCO ground-truth dicts and result lists read into a `BoxSet`, the way pycocotools' `COCO` and
`COCO.loadRes` read them.

What pycocotools does and this mirrors: images are evaluated in increasing id order and categories in
increasing id order; ground truth of other images or categories, and results of other categories, are
left out; a missing "iscrowd" means 0. Result records take their areas from the first record's kind, as
`loadRes` does: if it has a non-empty "bbox", every area is w * h (even in mask evaluation); otherwise
areas are mask areas. Where pycocotools would stop with an assertion or a KeyError, this raises a
ValueError naming the record: a result for an image not in the ground truth, a box that is not 4 numbers.
A ground-truth annotation without "area" (pycocotools: KeyError) gets its box's (or mask's) area.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ninshiki.metrics.matching import BoxSet


@dataclass(frozen=True)
class CocoInput:
    """A ground-truth dict and a result list as arrays, ready for `coco_eval.evaluate_boxes`."""
    boxes: BoxSet
    category_ids: list[int]
    category_names: list[str]
    image_ids: list[int]
    det_area: np.ndarray               # (D,) area of each result for the area ranges
    det_rles: list[Any] | None = None  # mask evaluation: RLE of each result, and of each ground-truth object
    gt_rles: list[Any] | None = None


def _boxes(records: Sequence[Mapping[str, Any]], where: str) -> np.ndarray:
    """(N, 4) float64 "bbox" fields; a ValueError names the first malformed record."""
    try:
        out = np.array([r["bbox"] for r in records], dtype=np.float64).reshape(len(records), 4)
    except (KeyError, TypeError, ValueError):
        for i, r in enumerate(records):
            box = r.get("bbox")
            if not isinstance(box, (list, tuple)) or len(box) != 4:
                raise ValueError(f"{where}[{i}]: 'bbox' must be 4 numbers [x, y, w, h], got {box!r}") from None
        raise ValueError(f"{where}: every 'bbox' must hold 4 numbers") from None
    return out


def _rle(segmentation: Any, height: int, width: int) -> Any:
    """pycocotools' `COCO.annToRLE`: polygons and uncompressed RLE to compressed RLE."""
    from faster_coco_eval.core import mask

    if isinstance(segmentation, list):
        return mask.merge(mask.frPyObjects(segmentation, height, width))
    if isinstance(segmentation.get("counts"), list):
        return mask.frPyObjects(segmentation, height, width)
    return segmentation


def _images_and_categories(gt: Mapping[str, Any]) -> tuple[list[int], dict[int, tuple[int, int]], list[int], list[str]]:
    try:
        images = {int(im["id"]): (int(im.get("height", 0)), int(im.get("width", 0))) for im in gt["images"]}
        categories = {int(c["id"]): str(c.get("name", c["id"])) for c in gt["categories"]}
    except KeyError as e:
        raise ValueError(f"COCO ground truth: missing {e.args[0]!r} (need 'images' and 'categories' with ids)") from None
    category_ids = sorted(categories)
    return sorted(images), images, category_ids, [categories[i] for i in category_ids]


def read_coco(gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]], *, iou_type: str = "bbox") -> CocoInput:
    """Arrays of a COCO ground-truth dict (as in instances_val2017.json) and a COCO result list.

    Raises:
        ValueError: on an unknown `iou_type`, a result for an image not in the ground truth, or a record
            missing a field or with a malformed "bbox" (the message names the record).
    """
    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}")
    image_ids, sizes, category_ids, names = _images_and_categories(gt)
    image_index = {i: n for n, i in enumerate(image_ids)}
    category_index = {c: n for n, c in enumerate(category_ids)}
    _require(results, ("image_id", "category_id", "score"), "results")
    _require(gt.get("annotations", []), ("image_id", "category_id"), "annotations")
    unknown = sorted({int(r["image_id"]) for r in results} - set(image_index))
    if unknown:
        raise ValueError(f"results name {len(unknown)} image id(s) not in the ground truth's images, e.g. {unknown[:5]}")
    anns = [a for a in gt.get("annotations", [])
            if int(a["image_id"]) in image_index and int(a["category_id"]) in category_index]
    dets = [r for r in results if int(r["category_id"]) in category_index]
    masks = iou_type == "segm"
    gt_boxes, gt_area, gt_rles = _ground_truth(anns, sizes, masks)
    box_results = bool(results) and len(results[0].get("bbox") or []) > 0  # loadRes's branch: the first record's
    det_boxes, det_area, det_rles = _results(dets, sizes, masks, box_results)
    boxes = BoxSet(
        num_images=len(image_ids), num_classes=len(category_ids),
        det_image=np.array([image_index[int(r["image_id"])] for r in dets], dtype=np.int64),
        det_label=np.array([category_index[int(r["category_id"])] for r in dets], dtype=np.int64),
        det_boxes=det_boxes, det_scores=np.array([r["score"] for r in dets], dtype=np.float64).reshape(len(dets)),
        gt_image=np.array([image_index[int(a["image_id"])] for a in anns], dtype=np.int64),
        gt_label=np.array([category_index[int(a["category_id"])] for a in anns], dtype=np.int64),
        gt_boxes=gt_boxes, gt_crowd=np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool).reshape(len(anns)),
        gt_difficult=np.zeros(len(anns), bool), gt_area=gt_area)
    return CocoInput(boxes, category_ids, names, image_ids, det_area, det_rles, gt_rles)


def _require(records: Sequence[Mapping[str, Any]], keys: tuple[str, ...], where: str) -> None:
    for i, record in enumerate(records):
        missing = [k for k in keys if k not in record]
        if missing:
            raise ValueError(f"{where}[{i}]: missing {', '.join(repr(k) for k in missing)}")


def _ground_truth(anns: list[Mapping[str, Any]], sizes: dict[int, tuple[int, int]],
                  masks: bool) -> tuple[np.ndarray, np.ndarray, list[Any] | None]:
    """(G, 4) xywh boxes, (G,) areas and, for mask evaluation, RLEs of the ground-truth annotations."""
    gt_rles = None
    if masks:
        _require(anns, ("segmentation",), "annotations (kept for evaluation)")
        gt_rles = [_rle(a["segmentation"], *sizes[int(a["image_id"])]) for a in anns]
    boxes = _boxes(anns, "annotations") if not masks or all("bbox" in a for a in anns) else np.zeros((len(anns), 4))
    area = np.array([a.get("area", np.nan) for a in anns], dtype=np.float64).reshape(len(anns))
    if np.isnan(area).any():
        area = _fill_areas(area, boxes, gt_rles)
    return boxes, area, gt_rles


def _results(dets: list[Mapping[str, Any]], sizes: dict[int, tuple[int, int]], masks: bool,
             box_results: bool) -> tuple[np.ndarray, np.ndarray, list[Any] | None]:
    """(D, 4) xywh boxes, (D,) areas as loadRes sets them and, for mask evaluation, RLEs of the results."""
    if box_results or not dets:
        boxes = _boxes(dets, "results")
        rles = [_rle(r["segmentation"] if "segmentation" in r else _box_polygon(b), *sizes[int(r["image_id"])])
                for r, b in zip(dets, boxes.tolist())] if masks else None
        return boxes, boxes[:, 2] * boxes[:, 3], rles
    from faster_coco_eval.core import mask

    _require(dets, ("segmentation",), "results")
    rles = [_rle(r["segmentation"], *sizes[int(r["image_id"])]) for r in dets]
    area = np.array([float(mask.area(rle)) for rle in rles], dtype=np.float64).reshape(len(dets))
    boxes = np.array([r["bbox"] if "bbox" in r else mask.toBbox(rle) for r, rle in zip(dets, rles)],
                     dtype=np.float64).reshape(len(dets), 4)
    return boxes, area, rles


def _box_polygon(box: list[float]) -> list[list[float]]:
    """loadRes's polygon for a box result without a mask."""
    x1, y1, w, h = box
    x2, y2 = x1 + w, y1 + h
    return [[x1, y1, x1, y2, x2, y2, x2, y1]]


def _fill_areas(area: np.ndarray, boxes: np.ndarray, rles: list[Any] | None) -> np.ndarray:
    from faster_coco_eval.core import mask

    area = area.copy()
    for i in np.flatnonzero(np.isnan(area)):
        area[i] = float(mask.area(rles[i])) if rles is not None else boxes[i, 2] * boxes[i, 3]
    return area


def mask_overlaps(data: CocoInput) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Pair overlaps of masks for `evaluate_boxes(overlaps=...)`: pycocotools' `maskUtils.iou` per group.

    The pairs come detection-major, sorted by (class, image) group, so each group's pairs are one
    contiguous (detections x ground truth) block in row-major order.
    """
    from faster_coco_eval.core import mask

    crowd, det_group = data.boxes.gt_crowd, data.boxes.det_group

    def overlaps(pair_det: np.ndarray, pair_gt: np.ndarray) -> np.ndarray:
        out = np.zeros(len(pair_det))
        group = det_group[pair_det]
        starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]]) if len(group) else np.zeros(0, np.int64)
        for begin, end in zip(starts, np.r_[starts[1:], len(group)]):
            dets = pair_det[begin:end]
            gts = pair_gt[begin:end][dets == dets[0]]                 # the group's ground truth, in order
            rows = dets[::len(gts)]                                     # the group's detections, in order
            ious = mask.iou([data.det_rles[i] for i in rows], [data.gt_rles[j] for j in gts],
                            [int(crowd[j]) for j in gts])
            out[begin:end] = np.asarray(ious, dtype=np.float64).reshape(-1)
        return out

    return overlaps
