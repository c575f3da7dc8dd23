"""InstanceMetric: box and mask COCO AP equal to pycocotools' COCOeval ("bbox" and "segm") on random sets of
polygons, RLEs and crowd regions, with empty images and more than 100 detections per image; its inputs and
errors; `encode_masks`."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from ninshiki.metrics.coco_eval import STAT_NAMES
from ninshiki.metrics.detection import GroundTruth
from ninshiki.metrics.instance import InstanceMetric, encode_masks
from ninshiki.structures import Detections

from ._detection_cases import CATEGORY_IDS, pycocotools_eval

mask_api = pytest.importorskip("pycocotools.mask")
# pycocotools' mask.decode under NumPy 2 warns about its own __array__; nothing of ours
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

CLASSES = [f"cat{c}" for c in CATEGORY_IDS]   # 13 (the last) never has ground truth


@dataclass
class Case:
    truths: list[GroundTruth]
    detections: list[Detections]
    gt_box: dict            # COCO ground truth, "area" as the box evaluation reads it
    gt_segm: dict           # the same, "area" as the mask evaluation reads it
    box_results: list[dict]
    segm_results: list[dict]   # segmentation only, as Detectron2 evaluates masks


def _polygon(rng: np.random.Generator, height: int, width: int) -> list[float]:
    """A star-shaped polygon of 5-12 vertices on a quarter-pixel grid, 2-150 pixels in radius."""
    count = int(rng.integers(5, 13))
    radius = np.exp(rng.uniform(np.log(2), np.log(150))) * rng.uniform(0.6, 1.0, count)
    angle = np.sort(rng.uniform(0, 2 * np.pi, count))
    cx, cy = rng.uniform(0.2, 0.8) * width, rng.uniform(0.2, 0.8) * height
    xy = np.stack([cx + radius * np.cos(angle), cy + radius * np.sin(angle)], 1)
    return (np.round(xy * 4) / 4).ravel().tolist()


def _uncompressed(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE (crowd regions): run lengths down the columns, starting with background."""
    flat = mask.T.ravel().astype(np.int8)
    runs = np.diff(np.r_[0, np.flatnonzero(np.diff(np.r_[0, flat, 1 - flat[-1]]))])
    return {"size": list(mask.shape), "counts": runs.tolist()}


def _object(rng: np.random.Generator, height: int, width: int) -> tuple[object, np.ndarray, bool]:
    """(COCO segmentation, its (H, W) bool mask, iscrowd): polygons, a compressed RLE or a crowd region."""
    kind = rng.random()
    if kind < 0.5:
        polygons = [_polygon(rng, height, width) for _ in range(1 + (rng.random() < 0.2))]
        segmentation, crowd = polygons, False
        rle = mask_api.merge(mask_api.frPyObjects(polygons, height, width))
    else:
        rle = mask_api.merge(mask_api.frPyObjects([_polygon(rng, height, width)], height, width))
        crowd = kind > 0.85
        if crowd:
            segmentation = _uncompressed(mask_api.decode(rle))
        else:
            segmentation = {"size": rle["size"], "counts": rle["counts"].decode()}
    return segmentation, mask_api.decode(rle).astype(bool), crowd


def _moved(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    """The mask itself, shifted a few pixels, grown or shrunk by a pixel."""
    kind = rng.random()
    if kind < 0.3:
        return mask.copy()
    if kind < 0.7:
        dy, dx = rng.integers(-3, 4, 2)
        out = np.zeros_like(mask)
        h, w = mask.shape
        out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = mask[max(-dy, 0):h - max(dy, 0),
                                                                          max(-dx, 0):w - max(dx, 0)]
        return out
    padded = np.pad(mask, 1)
    shifted = [padded[1 + dy:1 + dy + mask.shape[0], 1 + dx:1 + dx + mask.shape[1]] for dy in (-1, 0, 1)
               for dx in (-1, 0, 1)]
    return np.any(shifted, 0) if kind < 0.85 else np.all(shifted, 0)


def _box(mask: np.ndarray, rng: np.random.Generator) -> list[float]:
    """xyxy: the mask's extent, nudged on a quarter-pixel grid (and a small box for an empty mask)."""
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return [0.0, 0.0, 1.0, 1.0]
    box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64)
    return (box + np.round(rng.uniform(-1, 1, 4) * 4) / 4 * (rng.random() < 0.5)).tolist()


def random_case(seed: int, images: int = 6) -> Case:
    rng = np.random.default_rng(seed)
    case = Case([], [], {}, {}, [], [])
    categories = [{"id": c, "name": f"cat{c}"} for c in CATEGORY_IDS]
    case.gt_box = {"images": [], "categories": categories, "annotations": []}
    case.gt_segm = {"images": [], "categories": categories, "annotations": []}
    for image_id in rng.choice(np.arange(1, 500), images, replace=False).tolist():
        height, width = (int(v) for v in rng.integers(40, 220, 2))
        objects = [_object(rng, height, width) for _ in range(int(rng.integers(0, 6)))]
        labels = rng.integers(0, 4, len(objects))                  # CATEGORY_IDS[4] never has ground truth
        boxes = np.array([mask_api.toBbox(mask_api.encode(np.asfortranarray(m.astype(np.uint8))))
                          for _, m, _ in objects], np.float64).reshape(-1, 4)      # xywh extents, integers
        boxes[:, 2:] += boxes[:, :2]                                     # xyxy (exact)
        mask_area = np.array([float(m.sum()) for _, m, _ in objects])
        areas = np.round(mask_area * rng.uniform(0.8, 1.2, len(objects)), 3) if rng.random() < 0.5 else None
        crowd = np.array([c for _, _, c in objects], bool)
        case.truths.append(GroundTruth(boxes=boxes, labels=labels, size=(height, width), iscrowd=crowd, areas=areas,
                                       image_id=image_id, segmentations=[s for s, _, _ in objects]))
        for gt, area in ((case.gt_box, areas if areas is not None else (boxes[:, 2] - boxes[:, 0]) * (
                boxes[:, 3] - boxes[:, 1])), (case.gt_segm, areas if areas is not None else mask_area)):
            gt["images"].append({"id": image_id, "height": height, "width": width})
            for (segmentation, _, c), box, label, a in zip(objects, boxes.tolist(), labels.tolist(), area.tolist()):
                gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": image_id,
                                          "category_id": CATEGORY_IDS[label], "iscrowd": int(c), "area": a,
                                          "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                                          "segmentation": segmentation})
        _add_detections(case, rng, image_id, objects, labels, (height, width))
    return case


def _add_detections(case: Case, rng: np.random.Generator, image_id: int, objects: list, labels: np.ndarray,
                    size: tuple[int, int]) -> None:
    masks, classes = [], []
    if rng.random() > 0.15:                                              # some images have no detections
        for (_, mask, _), label in zip(objects, labels.tolist()):
            for _ in range(int(rng.integers(0, 4))):
                masks.append(_moved(rng, mask))
                classes.append(label if rng.random() < 0.85 else int(rng.integers(0, 5)))
        extra = 130 if rng.random() < 0.15 else int(rng.integers(0, 4))  # past the 100-per-class cap, or background
        for _ in range(extra):
            masks.append(_object(rng, *size)[1])
            classes.append(0 if extra == 130 else int(rng.integers(0, 5)))
    boxes = np.array([_box(m, rng) for m in masks], np.float64).reshape(-1, 4)
    scores = rng.random(len(masks)).astype(np.float32)
    tied = rng.random(len(masks)) < 0.4
    scores[tied] = np.round(scores[tied], 1)                             # ties in score
    stack = np.stack(masks) if masks else np.zeros((0, *size), bool)
    case.detections.append(Detections(torch.from_numpy(boxes).float(), torch.from_numpy(scores),
                                      torch.tensor(classes, dtype=torch.int64), torch.from_numpy(stack)))
    for box, score, label, rle in zip(boxes.tolist(), scores.tolist(), classes, encode_masks(stack)):
        common = {"image_id": image_id, "category_id": CATEGORY_IDS[label], "score": score}
        case.box_results.append({**common, "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]})
        case.segm_results.append({**common, "segmentation": rle})


def _reference(gt: dict, results: list[dict], iou_type: str) -> tuple[list[float], np.ndarray]:
    evaluator = pycocotools_eval(gt, results, iou_type)
    return [v if v > -1 else math.nan for v in evaluator.stats.tolist()], evaluator.eval["precision"]


def assert_same_as_pycocotools(case: Case, metric: InstanceMetric) -> None:
    scores, curves = metric.compute(), metric.curves()
    for prefix, gt, results, iou_type in (("", case.gt_box, case.box_results, "bbox"),
                                          ("mask_", case.gt_segm, case.segm_results, "segm")):
        stats, precision = _reference(gt, results, iou_type)
        ours = [scores[f"{prefix}{name}"] for name in STAT_NAMES]
        np.testing.assert_array_equal(ours, stats, strict=True)         # NaN == NaN here, values with ==
        key = "mask_coco_precision" if prefix else "coco_precision"
        for name, k in zip(CLASSES, np.argsort(np.argsort(CATEGORY_IDS))):
            expected = precision[:, :, k, 0, -1]
            np.testing.assert_array_equal(curves[key][name], np.where(expected > -1, expected, np.nan))


@pytest.mark.parametrize("seed", range(8))
def test_box_and_mask_ap_equal_pycocotools(seed: int) -> None:
    case = random_case(seed)
    if not case.box_results:
        pytest.skip("pycocotools cannot load an empty result list")   # test_no_detections covers it
    metric = InstanceMetric(CLASSES, category_ids=CATEGORY_IDS)
    half = len(case.truths) // 2                                          # in two batches, the later ids first
    metric.update(case.detections[half:], case.truths[half:])
    metric.update(case.detections[:half], case.truths[:half])
    assert_same_as_pycocotools(case, metric)


def test_rles_give_what_the_masks_give() -> None:
    case = random_case(3)
    from_masks = InstanceMetric(CLASSES, category_ids=CATEGORY_IDS)
    from_masks.update(case.detections, case.truths)
    from_rles = InstanceMetric(CLASSES, category_ids=CATEGORY_IDS)
    bare = [Detections(d.boxes, d.scores, d.labels) for d in case.detections]
    from_rles.update(bare, case.truths, rles=[encode_masks(d.masks) for d in case.detections])
    ours, theirs = from_masks.compute(), from_rles.compute()
    assert ours.keys() == theirs.keys()
    np.testing.assert_array_equal(list(ours.values()), list(theirs.values()))
    assert {f"mask_{n}" for n in STAT_NAMES} | {f"mask_ap/{c}" for c in CLASSES} | {"map", "voc12_map50"} <= set(ours)
    assert math.isnan(ours["mask_ap/cat13"]) and math.isnan(ours["ap50/cat13"])   # no ground truth


def test_no_detections_and_no_ground_truth() -> None:
    masks = np.zeros((2, 20, 30), bool)
    masks[0, 2:8, 3:9] = masks[1, 10:18, 5:25] = True
    truth = GroundTruth(boxes=[[3, 2, 9, 8], [5, 10, 25, 18]], labels=[0, 1], size=(20, 30), image_id=7,
                        segmentations=encode_masks(masks))
    metric = InstanceMetric(["a", "b"])
    metric.update([Detections.empty()], [truth])
    scores = metric.compute()
    assert scores["mask_map"] == 0.0 and scores["mask_ap50/a"] == 0.0 and scores["map"] == 0.0
    empty = InstanceMetric(["a", "b"])
    empty.update([Detections.empty()], [GroundTruth(boxes=np.zeros((0, 4)), labels=[], size=(20, 30))])
    assert math.isnan(empty.compute()["mask_map"])
    perfect = InstanceMetric(["a", "b"])
    perfect.update([Detections(torch.tensor([[3.0, 2, 9, 8], [5, 10, 25, 18]]), torch.tensor([0.9, 0.8]),
                               torch.tensor([0, 1]), torch.from_numpy(masks))], [truth])
    assert perfect.compute()["mask_map"] == pytest.approx(1.0, abs=1e-15)   # pycocotools: tp / (tp + fp + eps)


def test_missing_or_misplaced_masks_are_named() -> None:
    masks = np.zeros((1, 20, 30), bool)
    masks[0, 2:8, 3:9] = True
    det = Detections(torch.tensor([[3.0, 2, 9, 8]]), torch.tensor([0.9]), torch.tensor([0]))
    truth = GroundTruth(boxes=[[3, 2, 9, 8]], labels=[0], size=(20, 30), image_id=4,
                        segmentations=encode_masks(masks))
    metric = InstanceMetric(["a"])
    with pytest.raises(ValueError, match="detections of image 4 carry no masks"):
        metric.update([det], [truth])
    with pytest.raises(ValueError, match=r"image 4: detection masks of \(40, 30\) pixels"):
        metric.update([Detections(det.boxes, det.scores, det.labels, torch.zeros(1, 40, 30, dtype=torch.bool))],
                      [truth])
    with pytest.raises(ValueError, match="image 4: 2 RLEs for 1 detections"):
        metric.update([det], [truth], rles=[encode_masks(np.concatenate([masks, masks]))])
    with pytest.raises(ValueError, match=r"image 4: detection 0: RLE size \[20, 31\]"):
        metric.update([det], [truth], rles=[encode_masks(np.zeros((1, 20, 31), bool))])
    no_masks = GroundTruth(boxes=[[3, 2, 9, 8]], labels=[0], size=(20, 30), image_id=5)
    with pytest.raises(ValueError, match="ground truth of image 5 has no segmentations"):
        metric.update([det], [no_masks], rles=[encode_masks(masks)])
    one_missing = GroundTruth(boxes=[[3, 2, 9, 8]], labels=[0], size=(20, 30), image_id=6, segmentations=[None])
    with pytest.raises(ValueError, match="image 6: ground-truth object 0 has no segmentation"):
        metric.update([det], [one_missing], rles=[encode_masks(masks)])
    with pytest.raises(ValueError, match="2 segmentations for 1 objects"):
        GroundTruth(boxes=[[3, 2, 9, 8]], labels=[0], size=(20, 30), segmentations=[None, None])
    assert metric.compute()["mask_map"] != metric.compute()["mask_map"]   # nothing was added: NaN


def test_encode_masks_is_pycocotools_rle_with_str_counts() -> None:
    rng = np.random.default_rng(0)
    masks = rng.random((3, 17, 23)) < 0.3
    rles = encode_masks(torch.from_numpy(masks))
    assert all(isinstance(r["counts"], str) and r["size"] == [17, 23] for r in rles)
    for rle, mask in zip(rles, masks):
        reference = mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert rle["counts"] == reference["counts"].decode()
        assert np.array_equal(mask_api.decode(rle).astype(bool), mask)
    assert encode_masks(np.zeros((0, 4, 4), bool)) == []
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        encode_masks(np.zeros((4, 4), bool))
