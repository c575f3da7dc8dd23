"""Detection metrics in one object: COCO mAP (pycocotools' numbers exactly), VOC2007 and VOC2012 AP at
IoU 0.5, per-class AP, precision-recall curves and the log-average miss rate.

`update` stores each image's detections and ground truth as NumPy arrays (on the CPU, whatever device the
tensors were on); `compute` evaluates everything once, in image-id order, so the result does not depend on
how the images were batched or in which order batches arrived (images without an id are numbered in the
order they arrive). The evaluators are coco_eval.py, voc_eval.py and miss_rate.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ninshiki.data.annotations import AnnotatedImage
from ninshiki.metrics.coco_eval import IOU_THRESHOLDS, RECALL_THRESHOLDS, CocoEvaluation, evaluate_boxes
from ninshiki.metrics.matching import BoxSet, xyxy_to_xywh
from ninshiki.metrics.miss_rate import MissRateCurve, miss_rate_curves
from ninshiki.metrics.voc_eval import ClassPR, mean_ap, voc_evaluate
from ninshiki.structures import Detections


def _numpy(values: Any, dtype: type, shape: tuple[int, ...], what: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().to("cpu")
        values = (values.double() if values.is_floating_point() else values).numpy()  # bfloat16 has no NumPy dtype
    array = np.asarray(values, dtype=dtype)
    if array.size == 0:
        array = array.reshape(shape)
    if array.shape != shape:
        raise ValueError(f"{what}: expected shape {shape}, got {array.shape}")
    return array


@dataclass(kw_only=True)
class GroundTruth:
    """The annotated objects of one image, in the pixel coordinates its detections are given in.

    Accepts NumPy arrays or tensors on any device; stores float64 / int64 / bool NumPy arrays.
    """
    boxes: np.ndarray                   # (N, 4) xyxy pixels
    labels: np.ndarray                  # (N,) int64 class indices
    size: tuple[int, int]               # (height, width) of the image
    iscrowd: np.ndarray | None = None   # (N,) bool; COCO crowd regions; None -> all False
    difficult: np.ndarray | None = None  # (N,) bool; VOC difficult objects; None -> all False
    areas: np.ndarray | None = None     # (N,) float; COCO "area" for the size ranges; None -> box areas
    image_id: int | None = None         # None -> numbered by DetectionMetric in order of arrival
    # Per object: COCO polygons or an RLE dict in the pixels of `size` (mask AP, `InstanceMetric`), or None.
    segmentations: list[Any] | None = None

    def __post_init__(self) -> None:
        where = f"GroundTruth(image_id={self.image_id})"
        self.labels = _numpy(self.labels, np.int64, (len(self.labels),), f"{where}.labels").reshape(-1)
        n = len(self.labels)
        self.boxes = _numpy(self.boxes, np.float64, (n, 4), f"{where}.boxes")
        self.iscrowd = np.zeros(n, bool) if self.iscrowd is None else _numpy(self.iscrowd, bool, (n,), where)
        self.difficult = np.zeros(n, bool) if self.difficult is None else _numpy(self.difficult, bool, (n,), where)
        if self.areas is not None:
            self.areas = _numpy(self.areas, np.float64, (n,), f"{where}.areas")
        if not np.isfinite(self.boxes).all():
            raise ValueError(f"{where}: boxes must be finite")
        if self.segmentations is not None and len(self.segmentations) != n:
            raise ValueError(f"{where}: {len(self.segmentations)} segmentations for {n} objects")
        self.size = (int(self.size[0]), int(self.size[1]))

    @classmethod
    def from_annotated(cls, image: AnnotatedImage) -> GroundTruth:
        """The ground truth of one `AnnotatedImage` (boxes and segmentations in the pixels of its file)."""
        return cls(boxes=image.boxes, labels=image.labels, size=(image.height, image.width), iscrowd=image.iscrowd,
                   difficult=image.difficult, areas=image.areas, image_id=image.image_id,
                   segmentations=image.segmentations)


class DetectionMetric:
    """COCO, VOC and miss-rate evaluation of a detector over a dataset.

    compute() returns flat floats:
        - COCO (pycocotools' `COCOeval.stats`, equal to it bit for bit): ``map`` (AP@[.5:.95]), ``map50``,
          ``map75``, ``map_small``, ``map_medium``, ``map_large``, ``mar_1``, ``mar_10``, ``mar_100``,
          ``mar_small``, ``mar_medium``, ``mar_large``. NaN where pycocotools says -1 (nothing to average).
        - VOC at IoU 0.5 with difficult objects ignored: ``voc07_map50`` (11-point), ``voc12_map50``.
        - ``log_average_miss_rate``: per class (Dollár's, FPPI in [1e-2, 1e0]), then averaged over classes.
        - Per class name: ``ap/<name>`` (COCO AP@[.5:.95]), ``ap50/<name>`` (COCO AP@.5), ``voc12_ap50/<name>``.

    Classes without ground truth get NaN per class and are left out of every mean, as pycocotools leaves
    out its -1 entries. COCO counts difficult objects as ordinary objects (COCO has no such flag); VOC and
    the miss rate ignore crowd regions and difficult objects alike.

    Args:
        classes: class names; detection and ground-truth labels index this list.
        category_ids: COCO category id of each class (default 1 .. K). COCO averages in increasing id
            order, so the means match pycocotools run on the same data written as COCO JSON.
        iou_type: "bbox"; `metrics.instance.InstanceMetric` adds mask AP.
    """

    def __init__(self, classes: list[str], *, category_ids: list[int] | None = None, iou_type: str = "bbox") -> None:
        if not classes or len(set(classes)) != len(classes):
            raise ValueError(f"classes must be a non-empty list of unique names, got {classes!r}")
        ids = list(range(1, len(classes) + 1)) if category_ids is None else [int(i) for i in category_ids]
        if len(ids) != len(classes) or len(set(ids)) != len(ids):
            raise ValueError(f"category_ids must be {len(classes)} unique ids, one per class, got {category_ids!r}")
        if iou_type != "bbox":
            raise ValueError(f"iou_type {iou_type!r} is not supported: DetectionMetric evaluates boxes ('bbox'); "
                             "InstanceMetric adds masks")
        self.classes = list(classes)
        self.category_ids = ids
        self.iou_type = iou_type
        self.reset()

    def reset(self) -> None:
        """Forget every image seen so far."""
        self._images: dict[int, tuple[Any, ...]] = {}
        self._result: dict[str, Any] | None = None

    def update(self, predictions: list[Detections], targets: list[GroundTruth]) -> None:
        """Add images: the detections of each and its ground truth, in the same pixel coordinates."""
        self._add(predictions, targets, [None] * len(predictions))

    def _add(self, predictions: list[Detections], targets: list[GroundTruth], extras: list[Any]) -> None:
        """`update`, with one more item per image for subclasses' `_record` (InstanceMetric: its RLEs)."""
        if len(predictions) != len(targets):
            raise ValueError(f"got {len(predictions)} predictions for {len(targets)} targets")
        added: dict[int, tuple[Any, ...]] = {}   # committed only once the whole batch is valid
        for det, gt, extra in zip(predictions, targets, extras):
            image_id = int(gt.image_id) if gt.image_id is not None else len(self._images) + len(added) + 1
            if image_id in self._images or image_id in added:
                raise ValueError(f"image_id {image_id} was given twice (images without an id are numbered 1, 2, ... "
                                 "in order of arrival; give every image an id or none)")
            added[image_id] = self._record(image_id, det, gt, extra)
        self._images.update(added)
        self._result = None

    def _record(self, image_id: int, det: Detections, gt: GroundTruth, extra: Any = None) -> tuple[Any, ...]:
        """(det boxes, scores, labels, gt boxes, labels, iscrowd, difficult, areas (NaN: none given))."""
        n, k = len(det), len(self.classes)
        boxes = _numpy(det.boxes, np.float64, (n, 4), f"detections of image {image_id}")
        scores = _numpy(det.scores, np.float64, (n,), f"scores of image {image_id}")
        labels = _numpy(det.labels, np.int64, (n,), f"labels of image {image_id}")
        if not (np.isfinite(boxes).all() and np.isfinite(scores).all()):
            raise ValueError(f"detections of image {image_id}: boxes and scores must be finite")
        for what, lab in (("detection", labels), ("ground-truth", gt.labels)):
            if lab.size and (lab.min() < 0 or lab.max() >= k):
                raise ValueError(f"image {image_id}: {what} labels must lie in [0, {k}), got {lab.min()}..{lab.max()}")
        areas = gt.areas if gt.areas is not None else np.full(len(gt.labels), np.nan)
        return boxes, scores, labels, gt.boxes, gt.labels, gt.iscrowd, gt.difficult, areas

    def _boxes(self) -> BoxSet:
        """All images flattened, in increasing image-id order."""
        records = [self._images[i] for i in sorted(self._images)]

        def column(j: int, tail: tuple[int, ...], dtype: type) -> np.ndarray:
            return np.concatenate([np.zeros((0, *tail), dtype)] + [r[j] for r in records]).astype(dtype)

        rank = np.argsort(np.argsort(self.category_ids))   # class -> position among sorted COCO category ids
        gt_xywh = xyxy_to_xywh(column(3, (4,), np.float64))
        areas = column(7, (), np.float64)
        image = np.arange(len(records))
        return BoxSet(
            num_images=len(records), num_classes=len(self.classes),
            det_image=np.repeat(image, [len(r[1]) for r in records]).astype(np.int64),
            det_label=rank[column(2, (), np.int64)], det_boxes=xyxy_to_xywh(column(0, (4,), np.float64)),
            det_scores=column(1, (), np.float64),
            gt_image=np.repeat(image, [len(r[4]) for r in records]).astype(np.int64),
            gt_label=rank[column(4, (), np.int64)], gt_boxes=gt_xywh, gt_crowd=column(5, (), bool),
            gt_difficult=column(6, (), bool), gt_area=np.where(np.isnan(areas), gt_xywh[:, 2] * gt_xywh[:, 3], areas))

    def _evaluate(self) -> dict[str, Any]:
        if self._result is None:
            boxes = self._boxes()
            sorted_ids = sorted(self.category_ids)
            names = [self.classes[self.category_ids.index(c)] for c in sorted_ids]
            coco = evaluate_boxes(boxes, category_ids=sorted_ids, category_names=names)
            voc = dict(zip(names, voc_evaluate(boxes)))
            miss = dict(zip(names, miss_rate_curves(boxes)))
            self._result = {"coco": coco, "voc": voc, "miss": miss, "images": boxes.num_images}
        return self._result

    def compute(self) -> dict[str, float]:
        """Every metric, as described in the class docstring."""
        result = self._evaluate()
        coco: CocoEvaluation = result["coco"]
        voc: dict[str, ClassPR] = result["voc"]
        miss: dict[str, MissRateCurve] = result["miss"]
        out = coco.summary()
        out["voc07_map50"] = mean_ap([voc[n].ap07 for n in self.classes])
        out["voc12_map50"] = mean_ap([voc[n].ap12 for n in self.classes])
        out["log_average_miss_rate"] = mean_ap([miss[n].log_average for n in self.classes])
        per_class = coco.per_class()
        for name in self.classes:
            out[f"ap/{name}"] = per_class[f"ap/{name}"]
            out[f"ap50/{name}"] = per_class[f"ap50/{name}"]
            out[f"voc12_ap50/{name}"] = voc[name].ap12
        return out

    def curves(self) -> dict[str, Any]:
        """The curves behind compute(), for plots (viz.pr_curves, viz.miss_rate); arrays are read-only. Per
        class name:

        - ``"pr"``: VOC precision-recall at IoU 0.5 (raw, by decreasing score): ``ClassPR`` with recall,
          precision, scores, num_positives, ap07, ap12.
        - ``"coco_precision"``: (10, 101) COCO interpolated precision at `iou_thresholds` x
          `recall_thresholds` (area all, 100 detections); NaN rows for classes without ground truth.
        - ``"miss_rate"``: ``MissRateCurve`` with fppi, miss_rate, scores, num_positives, log_average.

        Plus ``"classes"`` (names in class order), ``"iou_thresholds"`` (10,), ``"recall_thresholds"``
        (101,) and ``"num_images"``.
        """
        result = self._evaluate()
        coco: CocoEvaluation = result["coco"]
        position = {name: k for k, name in enumerate(coco.category_names)}
        precision = np.where(coco.precision[:, :, :, 0, -1] > -1, coco.precision[:, :, :, 0, -1], np.nan)
        return {
            "classes": list(self.classes),
            "pr": {n: result["voc"][n] for n in self.classes},
            "coco_precision": {n: precision[:, :, position[n]].copy() for n in self.classes},
            "miss_rate": {n: result["miss"][n] for n in self.classes},
            "iou_thresholds": IOU_THRESHOLDS.copy(),
            "recall_thresholds": RECALL_THRESHOLDS.copy(),
            "num_images": result["images"],
        }
