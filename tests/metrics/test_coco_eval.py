"""COCO evaluation against pycocotools itself, compared with ==: summaries, and the full precision and
recall arrays, on random sets with crowd regions, empty images, classes without ground truth, results of
unknown categories, tied scores, every size range, boundary areas and more than 100 detections per class."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from ninshiki.metrics.coco_eval import STAT_NAMES, coco_evaluate, evaluate_coco

from ._detection_cases import CATEGORY_IDS, pycocotools_eval, random_case, to_coco

pytest.importorskip("pycocotools")


def assert_same_as_pycocotools(gt: dict, results: list[dict], iou_type: str = "bbox") -> None:
    reference = pycocotools_eval(gt, results, iou_type)
    ours = evaluate_coco(gt, results, iou_type=iou_type)
    np.testing.assert_array_equal(ours.precision, reference.eval["precision"], strict=True)
    np.testing.assert_array_equal(ours.recall, reference.eval["recall"], strict=True)
    assert ours.stats().tolist() == reference.stats.tolist()


@pytest.mark.parametrize("seed", range(40))
def test_equals_pycocotools_on_random_sets(seed: int) -> None:
    gt, results = to_coco(random_case(seed))
    if not results:
        pytest.skip("pycocotools cannot load an empty result list")  # covered by test_no_results
    assert_same_as_pycocotools(gt, results)


@pytest.mark.slow
def test_equals_pycocotools_on_a_larger_set() -> None:
    images = []
    for seed in range(400):                       # about 2,400 images
        for im in random_case(1000 + seed, max_images=12):
            im.image_id += 1000 * seed            # ids stay distinct across cases
            images.append(im)
    assert_same_as_pycocotools(*to_coco(images))


def test_flat_dict_names_and_per_class_values() -> None:
    gt, results = to_coco(random_case(3))
    scores = coco_evaluate(gt, results)
    reference = pycocotools_eval(gt, results)
    assert [k for k in scores if "/" not in k] == list(STAT_NAMES)
    for name, value in zip(STAT_NAMES, reference.stats):
        assert scores[name] == value or (value == -1 and math.isnan(scores[name]))
    order = sorted(CATEGORY_IDS)                   # pycocotools' class axis is in increasing id order
    for cat in CATEGORY_IDS:
        p = reference.eval["precision"][:, :, order.index(cat), 0, -1]
        expected = float(np.mean(p[p > -1])) if (p > -1).any() else math.nan
        assert scores[f"ap/cat{cat}"] == expected or (math.isnan(expected) and math.isnan(scores[f"ap/cat{cat}"]))
    assert math.isnan(scores["ap/cat13"]) and math.isnan(scores["ap50/cat13"])   # no ground truth


def test_inputs_are_not_modified() -> None:
    gt, results = to_coco(random_case(5))
    gt_before, results_before = copy.deepcopy(gt), copy.deepcopy(results)
    coco_evaluate(gt, results)
    assert gt == gt_before and results == results_before


def test_no_results_gives_zero_ap_for_classes_with_ground_truth() -> None:
    gt, _ = to_coco(random_case(7))
    evaluation = evaluate_coco(gt, [])
    counted = evaluation.precision > -1              # classes (and size ranges) with ground truth
    assert counted.any()
    assert (evaluation.precision[counted] == 0).all() and (evaluation.recall[evaluation.recall > -1] == 0).all()
    assert coco_evaluate(gt, [])["map"] == 0.0


def test_no_ground_truth_gives_nan_everywhere() -> None:
    gt = {"images": [{"id": 1, "height": 10, "width": 10}], "categories": [{"id": 1, "name": "a"}],
          "annotations": []}
    scores = coco_evaluate(gt, [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.9}])
    assert all(math.isnan(v) for v in scores.values())


def test_a_perfect_detection_reads_as_pycocotools_reads_it() -> None:
    # pycocotools divides by tp + fp + eps: one true positive has precision 1 / (1 + 2**-52), not 1.
    gt = {"images": [{"id": 1, "height": 100, "width": 100}], "categories": [{"id": 1, "name": "a"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 50], "area": 2500.0,
                           "iscrowd": 0}]}
    scores = coco_evaluate(gt, [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 50], "score": 0.5}])
    assert scores["map"] == 1 / (1 + 2 ** -52) and scores["mar_100"] == 1.0


def test_bad_results_are_named() -> None:
    gt, results = to_coco(random_case(1))
    with pytest.raises(ValueError, match="image id"):
        coco_evaluate(gt, [{"image_id": 10 ** 6, "category_id": 2, "bbox": [0, 0, 1, 1], "score": 1.0}])
    bad = [{"image_id": gt["images"][0]["id"], "category_id": 2, "bbox": [0, 0, 1, 1], "score": 1.0},
           {"image_id": gt["images"][0]["id"], "category_id": 2, "bbox": [0, 0, 1], "score": 1.0}]
    with pytest.raises(ValueError, match=r"results\[1\]: 'bbox' must be 4 numbers"):
        coco_evaluate(gt, bad)
    with pytest.raises(ValueError, match=r"results\[0\]: missing 'score'"):
        coco_evaluate(gt, [{"image_id": gt["images"][0]["id"], "category_id": 2, "bbox": [0, 0, 1, 1]}])
    with pytest.raises(ValueError, match="iou_type"):
        coco_evaluate(gt, results, iou_type="keypoints")


def _segm_case(seed: int) -> tuple[dict, list[dict]]:
    """Polygon ground truth (some crowd) and RLE results, as Mask R-CNN writes them."""
    from pycocotools import mask as mask_api

    rng = np.random.default_rng(seed)
    height, width = 60, 80
    gt = {"images": [{"id": i, "height": height, "width": width} for i in (1, 2, 3)],
          "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}], "annotations": []}
    results = []
    for image_id in (1, 2, 3):
        for _ in range(rng.integers(1, 4)):
            x, y = rng.uniform(0, 50, 2)
            w, h = rng.uniform(4, 30, 2)
            polygon = [x, y, x + w, y, x + w * rng.uniform(0.5, 1), y + h, x, y + h * rng.uniform(0.5, 1)]
            rle = mask_api.merge(mask_api.frPyObjects([polygon], height, width))
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": image_id,
                                      "category_id": int(rng.integers(1, 3)), "segmentation": [polygon],
                                      "area": float(mask_api.area(rle)), "bbox": list(mask_api.toBbox(rle)),
                                      "iscrowd": int(rng.random() < 0.15)})
            for _ in range(rng.integers(0, 3)):
                mask = np.zeros((height, width), np.uint8, order="F")
                x0, y0 = int(x + rng.integers(-4, 5)), int(y + rng.integers(-4, 5))
                mask[max(y0, 0):max(y0, 0) + int(h), max(x0, 0):max(x0, 0) + int(w)] = 1
                encoded = mask_api.encode(mask)
                encoded["counts"] = encoded["counts"].decode()
                results.append({"image_id": image_id, "category_id": int(rng.integers(1, 3)),
                                "segmentation": encoded, "score": float(np.round(rng.random(), 1))})
    return gt, results


@pytest.mark.parametrize("seed", range(5))
def test_mask_evaluation_equals_pycocotools(seed: int) -> None:
    gt, results = _segm_case(seed)
    if not results:
        pytest.skip("pycocotools cannot load an empty result list")
    assert_same_as_pycocotools(gt, results, iou_type="segm")
