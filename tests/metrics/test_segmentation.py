"""SegmentationMetric by hand (FCN section 5), against scikit-learn, and its conventions and errors."""
from __future__ import annotations

import csv
import math
import warnings
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from sklearn.metrics import accuracy_score, confusion_matrix, jaccard_score, recall_score

from ninshiki.metrics.segmentation import SegmentationMetric, per_class_table, write_per_class_iou

CLASSES = ["bg", "cat", "dog"]
# Rows = ground truth, columns = prediction.
HAND = np.array([[6, 2, 0],    # t_bg  = 8
                 [0, 4, 2],    # t_cat = 6
                 [1, 1, 2]])   # t_dog = 4; column sums: bg 7, cat 7, dog 4; 18 pixels, 12 on the diagonal


def maps_of(matrix: np.ndarray, shape: tuple[int, int], *, ignored: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(prediction, target) maps of `shape` whose confusion matrix is `matrix`, with `ignored` more pixels of
    target 255 (predicted as class 1), all in a fixed shuffled order."""
    truth, pred = [], []
    for (i, j), n in np.ndenumerate(matrix):
        truth += [i] * int(n)
        pred += [j] * int(n)
    truth += [255] * ignored
    pred += [1] * ignored
    order = np.random.default_rng(0).permutation(len(truth))
    return (torch.tensor(np.asarray(pred)[order]).reshape(shape),
            torch.tensor(np.asarray(truth)[order]).reshape(shape))


def test_hand_worked_three_classes() -> None:
    pred, truth = maps_of(HAND, (4, 5), ignored=2)     # 18 counted pixels + 2 ignored = 20
    metric = SegmentationMetric(CLASSES)
    metric.update(pred[None], truth[None])
    np.testing.assert_array_equal(metric.confusion_matrix, HAND)
    out = metric.compute()
    # pixel accuracy: (6 + 4 + 2) / 18 = 2/3
    assert out["pixel_acc"] == pytest.approx(2 / 3, abs=1e-12)
    # accuracies: 6/8 = 3/4, 4/6 = 2/3, 2/4 = 1/2; mean = (9 + 8 + 6) / 12 / 3 = 23/36
    assert [out[f"acc/{c}"] for c in CLASSES] == pytest.approx([3 / 4, 2 / 3, 1 / 2], abs=1e-12)
    assert out["mean_acc"] == pytest.approx(23 / 36, abs=1e-12)
    # IU: bg 6 / (8 + 7 - 6) = 6/9; cat 4 / (6 + 7 - 4) = 4/9; dog 2 / (4 + 4 - 2) = 3/9; mean = 13/27
    assert [out[f"iou/{c}"] for c in CLASSES] == pytest.approx([6 / 9, 4 / 9, 3 / 9], abs=1e-12)
    assert out["miou"] == pytest.approx(13 / 27, abs=1e-12)
    # frequency weighted: (8 * 6/9 + 6 * 4/9 + 4 * 3/9) / 18 = (84 / 9) / 18 = 14/27
    assert out["fwiou"] == pytest.approx(14 / 27, abs=1e-12)
    assert set(out) == {"miou", "pixel_acc", "mean_acc", "fwiou"} | {f"{m}/{c}" for m in ("iou", "acc") for c in CLASSES}


def sklearn_reference(pred: np.ndarray, truth: np.ndarray, k: int) -> dict[str, object]:
    keep = truth != 255
    y, p, labels = truth[keep], pred[keep], list(range(k))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        iou = jaccard_score(y, p, labels=labels, average=None, zero_division=0)
        acc = recall_score(y, p, labels=labels, average=None, zero_division=0)
    support = np.bincount(y, minlength=k)
    seen = np.isin(labels, np.concatenate([y, p]))
    iou = np.where(seen, iou, np.nan)          # the NaN rule: neither in the ground truth nor predicted
    acc = np.where(support > 0, acc, np.nan)   # recall of a class without samples is undefined
    return {"confusion": confusion_matrix(y, p, labels=labels), "iou": iou, "acc": acc,
            "pixel_acc": accuracy_score(y, p), "miou": np.nanmean(iou), "mean_acc": np.nanmean(acc),
            "fwiou": np.nansum(support * iou) / support.sum()}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_sklearn_on_random_maps(seed: int) -> None:
    k = 6
    rng = np.random.default_rng(seed)
    shapes = [(7, 9), (5, 5), (11, 4), (8, 8)]
    metric = SegmentationMetric([f"c{i}" for i in range(k)])
    all_pred, all_truth = [], []
    for h, w in shapes:
        truth = rng.integers(0, 4, (h, w))                    # classes 4 and 5 never in the ground truth
        truth[rng.random((h, w)) < 0.15] = 255
        pred = np.where(rng.random((h, w)) < 0.6, np.where(truth == 255, 0, truth), rng.integers(0, 5, (h, w)))
        metric.update([torch.from_numpy(pred)], [torch.from_numpy(truth).to(torch.uint8)])
        all_pred.append(pred.ravel())
        all_truth.append(truth.ravel())
    ref = sklearn_reference(np.concatenate(all_pred), np.concatenate(all_truth), k)
    out = metric.compute()
    np.testing.assert_array_equal(metric.confusion_matrix, ref["confusion"])
    np.testing.assert_allclose([out[f"iou/c{i}"] for i in range(k)], ref["iou"], rtol=0, atol=1e-12)
    np.testing.assert_allclose([out[f"acc/c{i}"] for i in range(k)], ref["acc"], rtol=0, atol=1e-12)
    for key in ("pixel_acc", "miou", "mean_acc", "fwiou"):
        assert out[key] == pytest.approx(ref[key], abs=1e-12), key
    assert math.isnan(out["iou/c5"]) and out["iou/c4"] == 0.0   # c5 never seen; c4 only predicted


def test_ignored_pixels_count_for_nothing() -> None:
    truth = torch.tensor([[0, 1, 9], [9, 1, 0]])
    pred = torch.tensor([[0, 1, 1], [2, 2, 0]])          # the predictions under 9 are wrong, and don't matter
    metric = SegmentationMetric(CLASSES, ignore_index=9)
    metric.update(pred[None], truth[None])
    np.testing.assert_array_equal(metric.confusion_matrix, [[2, 0, 0], [0, 1, 1], [0, 0, 0]])
    assert metric.pixel_count == 4
    only_ignored = SegmentationMetric(CLASSES)
    only_ignored.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.full((1, 2, 2), 255))
    with pytest.raises(RuntimeError, match="no labelled pixels"):
        only_ignored.compute()


def test_absent_classes_follow_the_nan_rule() -> None:
    # 4 classes: "dog" only predicted (IoU 0, counts in the mean), "cow" neither (NaN, excluded).
    metric = SegmentationMetric(["bg", "cat", "dog", "cow"])
    truth = torch.tensor([[0, 0, 1, 1]])
    pred = torch.tensor([[0, 0, 1, 2]])
    metric.update(pred[None], truth[None])
    out = metric.compute()
    assert out["iou/bg"] == 1.0 and out["iou/cat"] == 0.5 and out["iou/dog"] == 0.0
    assert math.isnan(out["iou/cow"]) and math.isnan(out["acc/cow"]) and math.isnan(out["acc/dog"])
    assert out["miou"] == pytest.approx((1.0 + 0.5 + 0.0) / 3, abs=1e-12)
    assert out["mean_acc"] == pytest.approx((1.0 + 0.5) / 2, abs=1e-12)   # over classes with ground truth
    assert out["fwiou"] == pytest.approx((2 * 1.0 + 2 * 0.5) / 4, abs=1e-12)
    assert out["pixel_acc"] == 0.75


def test_batched_and_per_image_updates_agree() -> None:
    g = torch.Generator().manual_seed(3)
    pred = torch.randint(0, 3, (4, 6, 5), generator=g)
    truth = torch.randint(0, 3, (4, 6, 5), generator=g)
    truth[truth == 2] = 255
    batched, listed, single = (SegmentationMetric(CLASSES) for _ in range(3))
    batched.update(pred, truth)
    listed.update(list(pred), list(truth))
    for p, t in zip(pred, truth):
        single.update(p[None].numpy(), t[None].numpy())
    for other in (listed, single):
        np.testing.assert_array_equal(other.confusion_matrix, batched.confusion_matrix)
        np.testing.assert_equal(other.compute(), batched.compute())   # NaN equal to NaN
    batched.reset()
    assert batched.pixel_count == 0


def test_states_sum_across_processes(tmp_path: Path) -> None:
    pred, truth = maps_of(HAND, (3, 6))
    halves = [SegmentationMetric(CLASSES), SegmentationMetric(CLASSES)]
    halves[0].update(pred[None, :1], truth[None, :1])
    halves[1].update(pred[None, 1:], truth[None, 1:])
    merged = SegmentationMetric(CLASSES)
    merged.load_state({"confusion": halves[0].state()["confusion"] + halves[1].state()["confusion"]})
    np.testing.assert_array_equal(merged.confusion_matrix, HAND)
    with pytest.raises(ValueError, match="non-negative integer"):
        merged.load_state({"confusion": torch.zeros(2, 2, dtype=torch.long)})
    # all_reduce over a one-rank gloo group sums with itself once: the counts stay.
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1,
                            timeout=timedelta(seconds=30))
    try:
        merged.all_reduce()
    finally:
        dist.destroy_process_group()
    np.testing.assert_array_equal(merged.confusion_matrix, HAND)


def test_bad_input_is_rejected() -> None:
    metric = SegmentationMetric(CLASSES)
    ok = torch.zeros(1, 2, 2, dtype=torch.long)
    with pytest.raises(ValueError, match=r"predictions must lie in \[0, 3\), got min 0 max 3"):
        metric.update(torch.tensor([[[0, 3], [1, 1]]]), ok)
    with pytest.raises(ValueError, match="min -1"):
        metric.update(torch.tensor([[[0, -1], [1, 1]]]), ok)
    with pytest.raises(ValueError, match=r"targets hold values \[4\]"):
        metric.update(ok, torch.tensor([[[0, 4], [255, 1]]]))
    with pytest.raises(ValueError, match=r"predictions\[0\] has shape \(2, 2\) but targets\[0\] has \(2, 3\)"):
        metric.update(ok, torch.zeros(1, 2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="2 prediction maps for 1 target maps"):
        metric.update([ok[0], ok[0]], [ok[0]])
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        metric.update(ok[0], ok[0])
    with pytest.raises(TypeError, match="integer dtype"):
        metric.update(ok.float(), ok)
    assert metric.pixel_count == 0                        # nothing was counted by the failed calls
    with pytest.raises(ValueError, match="ignore_index 1"):
        SegmentationMetric(CLASSES, ignore_index=1)
    with pytest.raises(ValueError, match="unique"):
        SegmentationMetric(["a", "a"])


def test_counts_live_on_the_requested_device() -> None:
    metric = SegmentationMetric(CLASSES, device="cpu")
    pred, truth = maps_of(HAND, (3, 6))
    metric.update(pred[None], truth[None])
    assert metric.state()["confusion"].device == torch.device("cpu")
    assert metric.state()["confusion"].dtype == torch.int64


def test_per_class_table_and_files(tmp_path: Path) -> None:
    metric = SegmentationMetric(["bg", "cat", "dog", "cow"])
    metric.update(torch.tensor([[[0, 0, 1, 2]]]), torch.tensor([[[0, 0, 1, 1]]]))
    rows = per_class_table(metric)
    assert [r["class"] for r in rows] == ["bg", "cat", "dog", "cow"]
    assert rows[1] == {"class": "cat", "iou": 0.5, "acc": 0.5, "gt_pixels": 2, "predicted_pixels": 1}
    assert math.isnan(rows[3]["iou"])
    csv_path, md_path = write_per_class_iou(tmp_path / "report", rows)
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == ["per_class_iou.csv", "per_class_iou.md"]
    with csv_path.open(newline="") as f:
        read = list(csv.DictReader(f))
    assert read[1] == {"class": "cat", "iou": "0.500000", "acc": "0.500000", "gt_pixels": "2", "predicted_pixels": "1"}
    assert read[3]["iou"] == "nan" and math.isnan(float(read[3]["iou"]))
    lines = md_path.read_text().splitlines()
    assert lines[0].startswith("| class | IoU |") and len(lines) == 2 + 4 + 1
    assert lines[5] == "| cow | n/a | n/a | 0 | 0 |"
    out = metric.compute()
    assert lines[6] == f"| **mean** | {out['miou']:.3f} | {out['mean_acc']:.3f} | 4 | 4 |"
    again = write_per_class_iou(tmp_path / "from_metric", metric)       # the metric itself gives the same files
    assert [p.read_text() for p in again] == [csv_path.read_text(), md_path.read_text()]
