"""COCO evaluation time: pycocotools against ninshiki on the same in-memory detections, and whether the
numbers agree.

A synthetic set shaped like COCO val2017: 5,000 images, 80 classes, about 7 ground-truth objects per image
(1% crowd regions, a third with a mask area below the box area) and 100 detections per image. Rows:

- pycocotools: COCO() over the ground-truth dict, loadRes, evaluate, accumulate, summarize.
- faster-coco-eval: the same through its C++ COCOeval_faster (for reference; it differs from pycocotools
  in the last bit, see src/ninshiki/metrics/coco_eval.py).
- ninshiki coco_evaluate: the same dicts through `ninshiki.metrics.coco_eval.coco_evaluate`.
- ninshiki DetectionMetric: `update` with the detections as tensors (xyxy), then `compute`, which also runs
  VOC07/VOC12 AP and the miss-rate curves; this is what training and `ninshiki detect val` pay.

Every row starts from the same data, takes its own copy (pycocotools writes into the dicts it is given),
and is timed from its input to its summary numbers, conversions included. Prints silenced.

    python benchmarks/coco_eval_speed.py                     # about 3 minutes, most of it pycocotools
    python benchmarks/coco_eval_speed.py --images 500        # a quick look
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe_machine

from ninshiki.metrics.coco_eval import STAT_NAMES, coco_evaluate
from ninshiki.metrics.detection import DetectionMetric, GroundTruth
from ninshiki.structures import Detections


def synthetic_set(images: int, classes: int, objects: float, detections: int, seed: int = 0) -> dict:
    """Arrays of a COCO-shaped set: ground truth and detections per image, xywh boxes."""
    rng = np.random.default_rng(seed)
    n_gt = rng.poisson(objects, images)
    g = int(n_gt.sum())
    gt_image = np.repeat(np.arange(images), n_gt)
    gt_wh = np.exp(rng.uniform(np.log(4), np.log(400), (g, 2)))            # small, medium and large
    gt_xy = rng.uniform(0, 640 - gt_wh)
    gt_label = rng.integers(0, classes, g)
    crowd = rng.random(g) < 0.01
    area = gt_wh.prod(1) * np.where(rng.random(g) < 1 / 3, rng.uniform(0.5, 1.0, g), 1.0)
    d = images * detections
    det_image = np.repeat(np.arange(images), detections)
    first = np.r_[0, np.cumsum(n_gt)[:-1]]
    near = (rng.random(d) < 0.3) & (n_gt[det_image] > 0)                  # jittered copies of ground truth
    source = first[det_image] + (rng.random(d) * np.maximum(n_gt[det_image], 1)).astype(int)
    source = np.where(near, np.minimum(source, g - 1), 0)
    det_wh = np.where(near[:, None], gt_wh[source] * rng.uniform(0.8, 1.25, (d, 2)), rng.uniform(4, 300, (d, 2)))
    det_xy = np.where(near[:, None], gt_xy[source] + rng.normal(0, 6, (d, 2)), rng.uniform(0, 600, (d, 2)))
    det_label = np.where(near, gt_label[source], rng.integers(0, classes, d))
    score = np.where(near, rng.uniform(0.2, 1.0, d), rng.uniform(0.0, 0.6, d)).astype(np.float32)
    def grid(boxes: np.ndarray) -> np.ndarray:   # quarter pixels: xyxy <-> xywh round trips are exact
        boxes = np.round(boxes * 4) / 4
        boxes[:, 2:] = np.maximum(boxes[:, 2:], 0.25)
        return boxes

    return {"images": images, "classes": classes, "gt_image": gt_image, "gt_xywh": grid(np.c_[gt_xy, gt_wh]),
            "gt_label": gt_label, "crowd": crowd, "area": area, "det_image": det_image,
            "det_xywh": grid(np.c_[det_xy, det_wh]), "det_label": det_label,
            "score": score}


def coco_dicts(data: dict) -> tuple[dict, list[dict]]:
    gt = {"images": [{"id": i + 1, "height": 640, "width": 640} for i in range(data["images"])],
          "categories": [{"id": c + 1, "name": f"class{c + 1}"} for c in range(data["classes"])],
          "annotations": [{"id": k + 1, "image_id": int(i) + 1, "category_id": int(c) + 1, "bbox": box,
                           "area": float(a), "iscrowd": int(z)}
                          for k, (i, c, box, a, z) in enumerate(zip(data["gt_image"], data["gt_label"],
                                                                    data["gt_xywh"].tolist(), data["area"],
                                                                    data["crowd"]))]}
    results = [{"image_id": int(i) + 1, "category_id": int(c) + 1, "bbox": box, "score": s}
               for i, c, box, s in zip(data["det_image"], data["det_label"], data["det_xywh"].tolist(),
                                       data["score"].tolist())]
    return gt, results


def metric_inputs(data: dict) -> tuple[list[Detections], list[GroundTruth]]:
    def xyxy(b: np.ndarray) -> np.ndarray:
        return np.c_[b[:, :2], b[:, :2] + b[:, 2:]]

    det_split = np.searchsorted(data["det_image"], np.arange(data["images"] + 1))
    gt_split = np.searchsorted(data["gt_image"], np.arange(data["images"] + 1))
    predictions, targets = [], []
    for i in range(data["images"]):
        d, g = slice(det_split[i], det_split[i + 1]), slice(gt_split[i], gt_split[i + 1])
        predictions.append(Detections(torch.tensor(xyxy(data["det_xywh"][d]), dtype=torch.float64),
                                      torch.from_numpy(data["score"][d]), torch.from_numpy(data["det_label"][d])))
        targets.append(GroundTruth(boxes=xyxy(data["gt_xywh"][g]), labels=data["gt_label"][g], size=(640, 640),
                                   iscrowd=data["crowd"][g], areas=data["area"][g], image_id=i + 1))
    return predictions, targets


def run_pycocotools(gt: dict, results: list[dict]) -> np.ndarray:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return np.asarray(evaluator.stats)


def run_faster_coco_eval(gt: dict, results: list[dict]) -> np.ndarray:
    from faster_coco_eval import COCO, COCOeval_faster

    coco_gt = COCO(gt)
    evaluator = COCOeval_faster(coco_gt, coco_gt.loadRes(results), "bbox", print_function=lambda *a, **k: None)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return np.asarray(evaluator.stats)


def run_metric(data: dict, classes: int) -> np.ndarray:
    predictions, targets = data
    metric = DetectionMetric([f"class{c + 1}" for c in range(classes)])
    metric.update(predictions, targets)
    scores = metric.compute()
    return np.array([scores[name] for name in STAT_NAMES])


def timed(fn: Callable[..., np.ndarray], *args) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    stats = fn(*args)
    return time.perf_counter() - start, np.nan_to_num(stats, nan=-1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--objects", type=float, default=7.3, help="mean ground-truth objects per image")
    parser.add_argument("--detections", type=int, default=100, help="detections per image")
    parser.add_argument("--skip-pycocotools", action="store_true")
    args = parser.parse_args()
    data = synthetic_set(args.images, args.classes, args.objects, args.detections)
    gt, results = coco_dicts(data)
    rows = []
    if not args.skip_pycocotools:
        rows.append(("pycocotools", *timed(run_pycocotools, copy.deepcopy(gt), copy.deepcopy(results))))
    rows.append(("faster-coco-eval", *timed(run_faster_coco_eval, copy.deepcopy(gt), copy.deepcopy(results))))
    rows.append(("ninshiki coco_evaluate", *timed(lambda: np.array(list(coco_evaluate(gt, results).values())[:12]))))
    rows.append(("ninshiki DetectionMetric (+VOC, miss rate)", *timed(run_metric, metric_inputs(data), args.classes)))
    reference_s, reference = rows[0][1], rows[0][2]
    print(f"\n{args.images} images, {args.classes} classes, {len(data['gt_label'])} objects, "
          f"{len(data['score'])} detections; {describe_machine()}\n")
    print(f"| evaluator | seconds | speed-up vs {rows[0][0]} | stats == {rows[0][0]} | max abs difference |")
    print("|---|---:|---:|---|---:|")
    for name, seconds, stats in rows:
        print(f"| {name} | {seconds:.1f} | {reference_s / seconds:.1f}x | {np.array_equal(stats, reference)} | "
              f"{np.abs(stats - reference).max():.1e} |")
    print(f"\nmAP {reference[0]:.4f}, mAP@.5 {reference[1]:.4f} ({rows[0][0]})")


if __name__ == "__main__":
    main()
