"""Seeded random detection sets for the evaluation tests, and pycocotools as the reference.

Every box lies on a quarter-pixel grid and every score is a float32, so the COCO JSON form (xywh, Python
floats) and the tensor form (xyxy, float32 scores) of a case hold exactly the same numbers.
"""
from __future__ import annotations

import contextlib
import copy
import io
from dataclasses import dataclass

import numpy as np

CATEGORY_IDS = [11, 2, 7, 5, 13]   # listed unsorted; 13 never has ground truth
UNKNOWN_CATEGORY = 99              # in results only: both evaluators ignore it


@dataclass
class Image:
    image_id: int
    gt_xywh: np.ndarray      # (G, 4)
    gt_category: np.ndarray  # (G,)
    gt_crowd: np.ndarray     # (G,) bool
    gt_area: np.ndarray      # (G,)
    dt_xywh: np.ndarray      # (D, 4)
    dt_category: np.ndarray  # (D,)
    dt_score: np.ndarray     # (D,) float32 values


def _grid(rng: np.random.Generator, low: float, high: float, size: int | tuple[int, ...]) -> np.ndarray:
    return np.round(rng.uniform(low, high, size) * 4) / 4


def _ground_truth(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    side = np.round(np.exp(rng.uniform(np.log(3), np.log(250), (n, 2))) * 4) / 4   # small, medium and large
    side[rng.random(n) < 0.1] = (32.0, 32.0)                   # area exactly 32**2: the inclusive range bound
    xy = _grid(rng, 0, 380, (n, 2))
    category = rng.choice(CATEGORY_IDS[:4], n)
    crowd = rng.random(n) < 0.12
    area = side[:, 0] * side[:, 1]
    mask_like = rng.random(n) < 0.3
    area[mask_like] *= np.round(rng.uniform(0.4, 1.0, mask_like.sum()), 3)   # a mask area below the box area
    return np.concatenate([xy, side], 1), category, crowd, area


def _detections(rng: np.random.Generator, gt: np.ndarray, category: np.ndarray) -> tuple[np.ndarray, ...]:
    boxes, cats = [], []
    for box, cat in zip(gt, category):
        for _ in range(rng.integers(0, 4)):
            kind = rng.random()
            if kind < 0.2:
                new = box.copy()                                        # IoU 1
            elif kind < 0.3:
                new = np.r_[box[:2], box[2] / 2, box[3]]                # IoU exactly 0.5
            else:
                new = np.r_[box[:2] + _grid(rng, -6, 6, 2), box[2:] * _grid(rng, 0.7, 1.3, 2)]
            boxes.append(np.round(new * 4) / 4)
            cats.append(cat if rng.random() < 0.85 else rng.choice(CATEGORY_IDS + [UNKNOWN_CATEGORY]))
    for _ in range(rng.integers(0, 5)):                                 # background
        boxes.append(np.r_[_grid(rng, 0, 500, 2), _grid(rng, 2, 200, 2)])
        cats.append(rng.choice(CATEGORY_IDS + [UNKNOWN_CATEGORY]))
    if rng.random() < 0.08:                                             # past the 100-per-class cap
        for _ in range(130):
            boxes.append(np.r_[_grid(rng, 0, 400, 2), _grid(rng, 4, 120, 2)])
            cats.append(CATEGORY_IDS[0])
    boxes = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    boxes[:, 2:] = np.maximum(boxes[:, 2:], 0.25)
    scores = rng.random(len(boxes))
    tied = rng.random(len(boxes)) < 0.5
    scores[tied] = np.round(scores[tied], 1)                            # ties in score
    return boxes, np.array(cats, dtype=np.int64), scores.astype(np.float32)


def random_case(seed: int, max_images: int = 10) -> list[Image]:
    """1 .. max_images images with distinct shuffled ids; some without ground truth or without detections."""
    rng = np.random.default_rng(seed)
    ids = rng.choice(np.arange(1, 1000), rng.integers(1, max_images + 1), replace=False)
    images = []
    for image_id in ids:
        gt, category, crowd, area = _ground_truth(rng, int(rng.integers(0, 7)))
        dt, dt_cat, score = _detections(rng, gt, category) if rng.random() > 0.15 else (
            np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0, np.float32))
        images.append(Image(int(image_id), gt, category, crowd, area, dt, dt_cat, score))
    return images


def to_coco(images: list[Image]) -> tuple[dict, list[dict]]:
    """The case as a COCO ground-truth dict and result list."""
    gt = {"images": [{"id": im.image_id, "height": 480, "width": 640} for im in images],
          "categories": [{"id": c, "name": f"cat{c}"} for c in CATEGORY_IDS], "annotations": []}
    results = []
    for im in images:
        for box, cat, crowd, area in zip(im.gt_xywh.tolist(), im.gt_category.tolist(), im.gt_crowd, im.gt_area):
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": im.image_id, "category_id": cat,
                                      "bbox": box, "area": float(area), "iscrowd": int(crowd)})
        for box, cat, score in zip(im.dt_xywh.tolist(), im.dt_category.tolist(), im.dt_score.tolist()):
            results.append({"image_id": im.image_id, "category_id": cat, "bbox": box, "score": score})
    return gt, results


def pycocotools_eval(gt: dict, results: list[dict], iou_type: str = "bbox"):
    """pycocotools' COCOeval after evaluate, accumulate and summarize, built in memory, prints silenced."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(results))
        evaluator = COCOeval(coco_gt, coco_dt, iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator
