"""DetectionMetric: pycocotools' numbers from tensors, independence of batching and order, VOC and miss rate
keys, curves, and its input checks."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ninshiki.data.annotations import AnnotatedImage
from ninshiki.metrics.coco_eval import STAT_NAMES
from ninshiki.metrics.detection import DetectionMetric, GroundTruth
from ninshiki.structures import Detections

from ._detection_cases import CATEGORY_IDS, UNKNOWN_CATEGORY, Image, pycocotools_eval, random_case, to_coco

CLASSES = [f"cat{c}" for c in CATEGORY_IDS]


def to_metric_inputs(images: list[Image]) -> tuple[list[Detections], list[GroundTruth]]:
    """The case as xyxy tensors; results of the unknown category are dropped (they have no class)."""
    predictions, targets = [], []
    for im in images:
        known = im.dt_category != UNKNOWN_CATEGORY
        xyxy = np.concatenate([im.dt_xywh[:, :2], im.dt_xywh[:, :2] + im.dt_xywh[:, 2:]], 1)[known]
        labels = [CATEGORY_IDS.index(c) for c in im.dt_category[known]]
        predictions.append(Detections(torch.tensor(xyxy, dtype=torch.float32), torch.from_numpy(im.dt_score[known]),
                                      torch.tensor(labels, dtype=torch.int64)))
        gt_xyxy = np.concatenate([im.gt_xywh[:, :2], im.gt_xywh[:, :2] + im.gt_xywh[:, 2:]], 1)
        targets.append(GroundTruth(boxes=torch.tensor(gt_xyxy), labels=[CATEGORY_IDS.index(c) for c in im.gt_category],
                                   size=(480, 640), iscrowd=im.gt_crowd, areas=im.gt_area, image_id=im.image_id))
    return predictions, targets


def evaluate(images: list[Image], batch: int = 3, category_ids: list[int] | None = CATEGORY_IDS) -> DetectionMetric:
    metric = DetectionMetric(CLASSES, category_ids=category_ids)
    predictions, targets = to_metric_inputs(images)
    for start in range(0, len(images), batch):
        metric.update(predictions[start:start + batch], targets[start:start + batch])
    return metric


def same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


@pytest.mark.parametrize("seed", range(12))
def test_coco_numbers_equal_pycocotools(seed: int) -> None:
    pytest.importorskip("pycocotools")
    images = random_case(seed)
    gt, results = to_coco(images)
    results = [r for r in results if r["category_id"] != UNKNOWN_CATEGORY]
    if not results:
        pytest.skip("pycocotools cannot load an empty result list")
    reference = pycocotools_eval(gt, results)
    scores = evaluate(images).compute()
    for name, value in zip(STAT_NAMES, reference.stats):
        assert same(scores[name], math.nan if value == -1 else value), name
    order = sorted(CATEGORY_IDS)
    for cat, name in zip(CATEGORY_IDS, CLASSES):
        p = reference.eval["precision"][:, :, order.index(cat), 0, -1]
        p50 = p[0]
        assert same(scores[f"ap/{name}"], float(np.mean(p[p > -1])) if (p > -1).any() else math.nan)
        assert same(scores[f"ap50/{name}"], float(np.mean(p50[p50 > -1])) if (p50 > -1).any() else math.nan)


def test_batching_and_arrival_order_do_not_matter() -> None:
    images = [im for seed in (20, 21, 22) for im in random_case(seed)]
    images = list({im.image_id: im for im in images}.values())
    base = evaluate(images, batch=len(images)).compute()
    shuffled = [images[i] for i in np.random.default_rng(0).permutation(len(images))]
    for result in (evaluate(images, batch=1).compute(), evaluate(shuffled, batch=4).compute()):
        assert list(result) == list(base)
        assert all(same(result[k], base[k]) for k in base)


def test_keys_and_classes_without_ground_truth() -> None:
    scores = evaluate(random_case(4)).compute()
    expected = [*STAT_NAMES, "voc07_map50", "voc12_map50", "log_average_miss_rate"]
    expected += [f"{kind}/{name}" for name in CLASSES for kind in ("ap", "ap50", "voc12_ap50")]
    assert list(scores) == expected
    assert all(math.isnan(scores[f"{kind}/cat13"]) for kind in ("ap", "ap50", "voc12_ap50"))
    voc = [scores[f"voc12_ap50/{n}"] for n in CLASSES if not math.isnan(scores[f"voc12_ap50/{n}"])]
    assert scores["voc12_map50"] == pytest.approx(np.mean(voc), abs=1e-15)   # NaN classes left out
    assert 0.0 <= scores["log_average_miss_rate"] <= 1.0


def test_category_order_changes_only_the_coco_summation_order() -> None:
    images = random_case(6)
    by_id, by_default = evaluate(images).compute(), evaluate(images, category_ids=None).compute()
    for key in by_id:
        assert by_id[key] == pytest.approx(by_default[key], abs=1e-15, nan_ok=True)


def test_perfect_detector_and_empty_metric() -> None:
    metric = DetectionMetric(["a", "b"])
    boxes = torch.tensor([[0.0, 0.0, 40.0, 40.0], [50.0, 50.0, 200.0, 150.0]])
    # bfloat16, as autocast may leave them (these boxes are exact in bfloat16)
    metric.update([Detections(boxes.bfloat16(), torch.tensor([0.9, 0.8]).bfloat16(), torch.tensor([0, 1]))],
                  [GroundTruth(boxes=boxes, labels=torch.tensor([0, 1]), size=(240, 320))])
    scores = metric.compute()
    assert scores["map"] == pytest.approx(1.0, abs=1e-15) and scores["voc07_map50"] == 1.0
    assert scores["voc12_map50"] == 1.0 and scores["mar_100"] == 1.0
    assert scores["log_average_miss_rate"] == pytest.approx(1e-10)   # Dollár's floor for a zero miss rate
    metric.reset()
    assert all(math.isnan(v) for v in metric.compute().values())
    # Ground truth but not a single detection.
    metric.update([Detections.empty()], [GroundTruth(boxes=boxes, labels=torch.tensor([0, 1]), size=(240, 320))])
    scores = metric.compute()
    assert scores["map"] == 0.0 and scores["voc07_map50"] == 0.0 and scores["log_average_miss_rate"] == 1.0


def test_curves() -> None:
    metric = evaluate(random_case(8))
    curves = metric.curves()
    assert curves["classes"] == CLASSES and curves["num_images"] == len(random_case(8))
    assert curves["iou_thresholds"].shape == (10,) and curves["recall_thresholds"].shape == (101,)
    scores = metric.compute()
    for name in CLASSES:
        coco = curves["coco_precision"][name]
        assert coco.shape == (10, 101)
        assert same(float(np.mean(coco[0])) if not np.isnan(coco).any() else math.nan, scores[f"ap50/{name}"])
        assert same(curves["pr"][name].ap12, scores[f"voc12_ap50/{name}"])
        assert len(curves["miss_rate"][name].fppi) == len(curves["miss_rate"][name].miss_rate)
    with pytest.raises(ValueError, match="read-only"):
        curves["pr"][CLASSES[0]].recall[:] = 0


def test_ground_truth_from_annotated_image() -> None:
    image = AnnotatedImage(file=Path("a.jpg"), width=64, height=48, boxes=np.array([[1.0, 2.0, 30.0, 40.0]]),
                           labels=np.array([1]), difficult=np.array([True]), image_id=7)
    gt = GroundTruth.from_annotated(image)
    assert gt.size == (48, 64) and gt.image_id == 7 and gt.difficult.tolist() == [True]
    assert gt.iscrowd.tolist() == [False] and gt.areas is None and gt.boxes.dtype == np.float64


def test_input_checks() -> None:
    metric = DetectionMetric(["a"])
    gt = GroundTruth(boxes=np.zeros((0, 4)), labels=np.zeros(0), size=(10, 10), image_id=1)
    with pytest.raises(ValueError, match="labels must lie in"):
        metric.update([Detections(torch.ones(1, 4), torch.ones(1), torch.tensor([3]))], [gt])
    with pytest.raises(ValueError, match="2 predictions for 1 targets"):
        metric.update([Detections.empty(), Detections.empty()], [gt])
    metric.update([Detections.empty()], [gt])
    with pytest.raises(ValueError, match="image_id 1 was given twice"):
        metric.update([Detections.empty()], [gt])
    with pytest.raises(ValueError, match="boxes"):
        GroundTruth(boxes=np.zeros((2, 3)), labels=np.zeros(2), size=(10, 10))
    with pytest.raises(ValueError, match="bbox"):
        DetectionMetric(["a"], iou_type="segm")
    with pytest.raises(ValueError, match="unique"):
        DetectionMetric(["a", "a"])
