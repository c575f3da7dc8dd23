"""Instance-segmentation metrics: COCO box AP and mask AP of the same detections (Mask R-CNN, He et al.,
"Mask R-CNN", ICCV 2017, reports both), equal to pycocotools' `COCOeval` with iouType "bbox" and "segm".

Masks are kept as COCO run-length encodings (RLE): a detection's bool mask over a 640 x 480 image is 300 KB,
its RLE some hundred bytes, and pycocotools' mask IoU works on RLEs directly (faster-coco-eval's mask API,
the same C code). Mask AP follows Detectron2's convention for the result records it is compared with:
segmentation only, without "bbox", so pycocotools' `loadRes` takes each detection's area for the
small / medium / large ranges from its mask (with a "bbox" it would take the box's). Ground-truth areas are
the annotated "area" (`GroundTruth.areas`), else the mask's, as `coco_files.read_coco` fills a missing one.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ninshiki.metrics.coco_eval import CocoEvaluation, evaluate_boxes
from ninshiki.metrics.coco_files import CocoInput, mask_overlaps
from ninshiki.metrics.detection import DetectionMetric, GroundTruth
from ninshiki.structures import Detections

RLE = dict[str, Any]


def encode_masks(masks: Tensor | np.ndarray) -> list[RLE]:
    """Compressed COCO RLE of each mask, ``counts`` as a str so the records can go into JSON.

    Shape:
        - masks: (N, H, W) bool or 0/1, on any device. Output: N dicts {"size": [H, W], "counts": str}.
    """
    from faster_coco_eval.core import mask as coco_mask

    if isinstance(masks, Tensor):
        masks = masks.detach().to("cpu", torch.uint8).numpy()
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {masks.shape}")
    if len(masks) == 0:
        return []
    planes = np.asfortranarray((masks != 0).astype(np.uint8).transpose(1, 2, 0))    # (H, W, N), column-major
    return [{"size": [int(v) for v in rle["size"]],
             "counts": rle["counts"].decode("ascii") if isinstance(rle["counts"], bytes) else rle["counts"]}
            for rle in coco_mask.encode(planes)]


class InstanceMetric(DetectionMetric):
    """COCO box and mask evaluation of an instance segmenter over a dataset.

    compute() returns everything `DetectionMetric.compute` does for the boxes (``map``, ``map50``, ...,
    VOC AP, the miss rate, ``ap/<name>``) and the twelve COCO numbers of the masks prefixed ``mask_``
    (``mask_map``, ``mask_map50``, ``mask_map75``, ``mask_map_small`` ... ``mask_mar_large``), with per class
    ``mask_ap/<name>`` and ``mask_ap50/<name>``. NaN where pycocotools says -1.

    Ground truth needs `GroundTruth.segmentations` (one per object, crowd regions included); detections need
    masks in the ground truth's pixels: `Detections.masks` (N, H, W) bool, or their RLEs given to `update`
    (`EvalResult.rles`).

    Args:
        classes: class names; detection and ground-truth labels index this list.
        category_ids: COCO category id of each class (default 1 .. K), as `DetectionMetric`.
    """

    def __init__(self, classes: list[str], *, category_ids: list[int] | None = None) -> None:
        super().__init__(classes, category_ids=category_ids)

    def update(self, predictions: list[Detections], targets: list[GroundTruth], *,
               rles: list[list[RLE]] | None = None) -> None:
        """Add images: detections with masks and their ground truth, in the same pixel coordinates.

        Args:
            predictions: per image; their `masks` are used where `rles` is None.
            targets: per image, with `segmentations`.
            rles: per image, one COCO RLE (compressed or not) per detection, e.g. `EvalResult.rles[index]`.

        Raises:
            ValueError: a detection or ground-truth object without a mask, or a mask of another size than
                its image (naming the image id and the object).
        """
        if rles is not None and len(rles) != len(predictions):
            raise ValueError(f"got RLEs of {len(rles)} images for {len(predictions)} predictions")
        self._add(predictions, targets, list(rles) if rles is not None else [None] * len(predictions))

    def _record(self, image_id: int, det: Detections, gt: GroundTruth, extra: Any = None) -> tuple[Any, ...]:
        boxes = super()._record(image_id, det, gt)
        return (*boxes, _detection_rles(image_id, det, gt.size, extra), _truth_rles(image_id, gt))

    def _evaluate(self) -> dict[str, Any]:
        result = super()._evaluate()
        if "mask" not in result:
            result["mask"] = self._evaluate_masks()
        return result

    def _evaluate_masks(self) -> CocoEvaluation:
        """pycocotools' segm evaluate + accumulate over the images in increasing id order."""
        from faster_coco_eval.core import mask as coco_mask

        records = [self._images[i] for i in sorted(self._images)]
        det_rles = [rle for r in records for rle in r[8]]
        gt_rles = [rle for r in records for rle in r[9]]
        boxes = self._boxes()
        det_area = np.asarray(coco_mask.area(det_rles), np.float64).reshape(-1) if det_rles else np.zeros(0)
        gt_mask_area = np.asarray(coco_mask.area(gt_rles), np.float64).reshape(-1) if gt_rles else np.zeros(0)
        annotated = np.concatenate([np.zeros(0)] + [r[7] for r in records]).astype(np.float64)   # NaN: none given
        boxes = replace(boxes, gt_area=np.where(np.isnan(annotated), gt_mask_area, annotated))
        sorted_ids = sorted(self.category_ids)
        names = [self.classes[self.category_ids.index(c)] for c in sorted_ids]
        data = CocoInput(boxes, sorted_ids, names, sorted(self._images), det_area, det_rles, gt_rles)
        return evaluate_boxes(boxes, category_ids=sorted_ids, category_names=names, det_area=det_area,
                              overlaps=mask_overlaps(data))

    def compute(self) -> dict[str, float]:
        """Box metrics as `DetectionMetric.compute`, then the mask metrics (class docstring)."""
        out = super().compute()
        masks: CocoEvaluation = self._evaluate()["mask"]
        out.update({f"mask_{name}": value for name, value in masks.summary().items()})
        per_class = masks.per_class()
        for name in self.classes:
            out[f"mask_ap/{name}"] = per_class[f"ap/{name}"]
            out[f"mask_ap50/{name}"] = per_class[f"ap50/{name}"]
        return out

    def curves(self) -> dict[str, Any]:
        """`DetectionMetric.curves` plus ``"mask_coco_precision"``: per class name, the (10, 101) COCO
        interpolated precision of the masks (area all, 100 detections), NaN rows without ground truth."""
        out = super().curves()
        masks: CocoEvaluation = self._evaluate()["mask"]
        position = {name: k for k, name in enumerate(masks.category_names)}
        precision = masks.precision[:, :, :, 0, -1]
        precision = np.where(precision > -1, precision, np.nan)
        out["mask_coco_precision"] = {n: precision[:, :, position[n]].copy() for n in self.classes}
        return out


def _detection_rles(image_id: int, det: Detections, size: tuple[int, int], rles: list[RLE] | None) -> list[RLE]:
    """One compressed RLE per detection, from the given RLEs or the detections' masks."""
    from ninshiki.data.formats.rle import to_rle

    height, width = size
    if rles is None:
        if det.masks is None:
            if len(det) == 0:
                return []
            raise ValueError(f"detections of image {image_id} carry no masks (and no RLEs were given)")
        if tuple(det.masks.shape[-2:]) != size:
            raise ValueError(f"image {image_id}: detection masks of {tuple(det.masks.shape[-2:])} pixels, but the "
                             f"ground truth is {size}; map them to the original image (Letterbox.masks_to_original)")
        return encode_masks(det.masks)
    if len(rles) != len(det):
        raise ValueError(f"image {image_id}: {len(rles)} RLEs for {len(det)} detections")
    out = []
    for j, rle in enumerate(rles):
        try:
            out.append(to_rle(rle, height, width))
        except ValueError as err:
            raise ValueError(f"image {image_id}: detection {j}: {err}") from None
    return out


def _truth_rles(image_id: int, gt: GroundTruth) -> list[RLE]:
    """One compressed RLE per ground-truth object (crowd regions included), as pycocotools' `annToRLE`."""
    from ninshiki.data.formats.rle import to_rle

    n = len(gt.labels)
    if n and gt.segmentations is None:
        raise ValueError(f"ground truth of image {image_id} has no segmentations; mask AP needs one per object")
    out = []
    for j, segmentation in enumerate(gt.segmentations or []):
        if segmentation is None:
            raise ValueError(f"image {image_id}: ground-truth object {j} has no segmentation; mask AP needs one "
                             "per object")
        try:
            out.append(to_rle(segmentation, *gt.size))
        except (ValueError, TypeError) as err:
            raise ValueError(f"image {image_id}: ground-truth object {j}: {err}") from None
    return out
