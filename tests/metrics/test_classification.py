"""ClassificationMetric against scikit-learn, by hand, across update() calls and across gloo ranks."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import (accuracy_score, balanced_accuracy_score, confusion_matrix,
                             precision_recall_fscore_support, top_k_accuracy_score)

from ninshiki.metrics import ClassificationMetric, topk_predictions

ATOL = 1e-12
KINDS = ("continuous", "ties", "never_predicted", "absent_labels")


def random_case(seed: int, kind: str, num_classes: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded logits (B, K) float64 and labels (B,) int64 of one of four kinds.

    ties: integer logits in {0, 1, 2}, so most rows tie somewhere, top-1 included.
    never_predicted: the last half of the classes get logits far below the rest, so are never predicted.
    absent_labels: labels drawn from the first half of the classes only.
    """
    g = torch.Generator().manual_seed(seed)
    if kind == "ties":
        logits = torch.randint(0, 3, (batch, num_classes), generator=g).double()
    else:
        logits = torch.randn(batch, num_classes, generator=g, dtype=torch.float64)
    if kind == "never_predicted":
        logits[:, (num_classes + 1) // 2:] -= 100.0
    high = max(1, num_classes // 2) if kind == "absent_labels" else num_classes
    labels = torch.randint(0, high, (batch,), generator=g)
    return logits, labels


def tie_free_scores(logits: np.ndarray) -> np.ndarray:
    """Scores that rank classes as ClassificationMetric does (ties to the lower index), without ties.

    scikit-learn's top_k_accuracy_score breaks ties toward the higher index, so it is given these.
    """
    order = np.argsort(-logits, axis=1, kind="stable")            # stable: equal logits keep index order
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(logits.shape[1])[None].repeat(len(logits), 0), axis=1)
    return (logits.shape[1] - ranks).astype(np.float64)


def sklearn_reference(logits: torch.Tensor, labels: torch.Tensor, topk: tuple[int, ...]) -> dict:
    scores, y_true = logits.numpy(), labels.numpy()
    k = scores.shape[1]
    y_pred = scores.argmax(1)                                       # numpy: first maximum, like torch.argmax
    every = list(range(k))
    p, r, f, support = precision_recall_fscore_support(y_true, y_pred, labels=every, average=None, zero_division=0)
    macro = precision_recall_fscore_support(y_true, y_pred, average="macro", zero_division=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true" is the point of some cases
        balanced = balanced_accuracy_score(y_true, y_pred)
    out = {"top1": accuracy_score(y_true, y_pred), "precision_macro": macro[0], "recall_macro": macro[1],
           "f1_macro": macro[2], "balanced_accuracy": balanced}
    for top in topk:
        if 1 < top < k:
            out[f"top{top}"] = top_k_accuracy_score(y_true, tie_free_scores(scores), k=top, labels=every)
        elif top == k:
            out[f"top{top}"] = 1.0
    out.update({f"precision/{i}": v for i, v in enumerate(p)})
    out.update({f"recall/{i}": v for i, v in enumerate(r)})
    table = {"support": support, "precision": p, "recall": r, "f1": f}
    return {"metrics": out, "confusion": confusion_matrix(y_true, y_pred, labels=every), "table": table}


CASES = [(seed, kind, k, b) for seed, (kind, k, b) in enumerate(
    (kind, k, b) for kind in KINDS for k in (2, 3, 4, 7, 12) for b in (1, 9, 64, 257))]


@pytest.mark.parametrize("seed, kind, num_classes, batch", CASES)
def test_matches_sklearn(seed: int, kind: str, num_classes: int, batch: int) -> None:
    logits, labels = random_case(seed, kind, num_classes, batch)
    metric = ClassificationMetric(num_classes, topk=(1, 2, 3, 5))
    metric.update(logits, labels)
    got, want = metric.compute(), sklearn_reference(logits, labels, metric.topk)
    assert got.keys() == want["metrics"].keys()
    for key, value in want["metrics"].items():
        assert abs(got[key] - value) <= ATOL, (key, got[key], value)
    np.testing.assert_array_equal(metric.confusion.numpy(), want["confusion"])
    assert metric.confusion.dtype == torch.int64 and metric.count == batch
    for row, support, p, r, f in zip(metric.per_class_table(), *want["table"].values()):
        assert row["support"] == support
        np.testing.assert_allclose([row["precision"], row["recall"], row["f1"]], [p, r, f], rtol=0, atol=ATOL)


@pytest.mark.parametrize("seed", range(4))
def test_tie_free_scores_do_not_change_sklearn_without_ties(seed: int) -> None:
    logits, labels = random_case(seed, "continuous", 9, 100)
    for k in (2, 3, 5):
        assert top_k_accuracy_score(labels, logits, k=k, labels=range(9)) == top_k_accuracy_score(
            labels, tie_free_scores(logits.numpy()), k=k, labels=range(9))


def test_hand_worked_three_classes() -> None:
    logits = torch.tensor([[3.0, 1.0, 0.0],   # true cat:  predicted cat,  true rank 0
                           [1.0, 2.0, 0.0],   # true cat:  predicted dog,  true rank 1
                           [0.0, 5.0, 1.0],   # true dog:  predicted dog,  true rank 0
                           [2.0, 2.0, 0.0],   # true dog:  tie, lower index wins: predicted cat, true rank 1
                           [0.0, 1.0, 3.0],   # true bird: predicted bird, true rank 0
                           [4.0, 1.0, 0.0]])  # true bird: predicted cat,  true rank 2
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    metric = ClassificationMetric(3, class_names=["cat", "dog", "bird"], topk=(1, 2, 5))
    metric.update(logits, labels)
    assert metric.confusion.tolist() == [[1, 1, 0], [1, 1, 0], [1, 0, 1]]
    # precision = diagonal / column sums = 1/3, 1/2, 1/1; recall = diagonal / row sums = 1/2 each;
    # f1 = 2 tp / (row + column sum) = 2/5, 2/4, 2/3.
    expected = {"top1": 3 / 6, "top2": 5 / 6,                      # no top5: 5 > K
                "precision_macro": (1 / 3 + 1 / 2 + 1) / 3, "recall_macro": 1 / 2,
                "f1_macro": (2 / 5 + 2 / 4 + 2 / 3) / 3, "balanced_accuracy": 1 / 2,
                "precision/cat": 1 / 3, "precision/dog": 1 / 2, "precision/bird": 1.0,
                "recall/cat": 1 / 2, "recall/dog": 1 / 2, "recall/bird": 1 / 2}
    got = metric.compute()
    assert got.keys() == expected.keys()
    assert got == pytest.approx(expected, abs=ATOL)
    assert [row["class"] for row in metric.per_class_table()] == ["cat", "dog", "bird"]
    assert metric.per_class_table()[2] == pytest.approx(
        {"class": "bird", "support": 2, "precision": 1.0, "recall": 0.5, "f1": 2 / 3})


def test_zero_division_and_macro_over_occurring_classes() -> None:
    # Class 2 is predicted once but has no sample; class 3 has neither and is left out of the macro averages.
    metric = ClassificationMetric(4, topk=(1,))
    metric.update(torch.eye(4)[[0, 2, 1]], torch.tensor([0, 0, 1]))
    got = metric.compute()
    assert got["precision/2"] == 0.0 and got["recall/2"] == 0.0
    assert got["precision/3"] == 0.0 and got["recall/3"] == 0.0
    assert got["precision_macro"] == pytest.approx((1 + 1 + 0) / 3)
    assert got["recall_macro"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert got["balanced_accuracy"] == pytest.approx((0.5 + 1) / 2)   # classes with samples only


@pytest.mark.parametrize("seed", range(3))
def test_many_updates_equal_one(seed: int) -> None:
    logits, labels = random_case(seed, KINDS[seed], 6, 200)
    whole = ClassificationMetric(6, topk=(1, 3))
    whole.update(logits, labels)
    parts = ClassificationMetric(6, topk=(1, 3))
    for chunk in torch.tensor_split(torch.arange(200), [0, 1, 50, 50, 123]):  # includes empty batches
        parts.update(logits[chunk], labels[chunk])
    assert parts.compute() == whole.compute()
    assert torch.equal(parts.confusion, whole.confusion)


def test_reset_forgets_everything() -> None:
    first, second = random_case(0, "continuous", 5, 40), random_case(1, "ties", 5, 30)
    fresh = ClassificationMetric(5)
    fresh.update(*second)
    metric = ClassificationMetric(5)
    metric.update(*first)
    metric.reset()
    assert metric.count == 0 and not metric.confusion.any()
    metric.update(*second)
    assert metric.compute() == fresh.compute()


def test_low_precision_logits_and_int32_labels() -> None:
    logits, labels = random_case(3, "ties", 4, 50)
    reference = ClassificationMetric(4)
    reference.update(logits, labels)
    metric = ClassificationMetric(4)
    metric.update(logits.half(), labels.int())
    assert metric.compute() == reference.compute()


def test_keys_and_topk_larger_than_k() -> None:
    metric = ClassificationMetric(5, class_names=list("abcde"), topk=(5, 1, 10))
    metric.update(*random_case(0, "continuous", 5, 10))
    got = metric.compute()
    assert list(got)[:2] == ["top1", "top5"] and "top10" not in got and got["top5"] == 1.0
    assert {f"precision/{n}" for n in "abcde"} <= got.keys() and {f"recall/{n}" for n in "abcde"} <= got.keys()
    assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in got.values())


def test_bad_input_is_rejected_clearly() -> None:
    metric = ClassificationMetric(3)
    with pytest.raises(ValueError, match=r"shape \(B, 3\)"):
        metric.update(torch.zeros(2, 4), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="labels must have shape"):
        metric.update(torch.zeros(2, 3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError, match="integer"):
        metric.update(torch.zeros(2, 3), torch.zeros(2))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        metric.update(torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="NaN"):
        metric.update(torch.tensor([[0.0, float("nan"), 1.0]]), torch.tensor([0]))
    assert metric.count == 0                                   # nothing was half-counted
    with pytest.raises(RuntimeError, match="no samples"):
        metric.compute()
    with pytest.raises(ValueError, match="class_names"):
        ClassificationMetric(3, class_names=["a", "b"])
    with pytest.raises(ValueError, match="unique"):
        ClassificationMetric(2, class_names=["a", "a"])
    with pytest.raises(ValueError, match="topk"):
        ClassificationMetric(3, topk=(0,))


def test_from_confusion_rebuilds_top1_and_per_class_numbers() -> None:
    logits, labels = random_case(5, "never_predicted", 6, 120)
    metric = ClassificationMetric(6, class_names=list("abcdef"))
    metric.update(logits, labels)
    rebuilt = ClassificationMetric.from_confusion(metric.confusion, class_names=list("abcdef"))
    assert rebuilt.compute() == {k: v for k, v in metric.compute().items() if k != "top5"}
    assert rebuilt.per_class_table() == metric.per_class_table() and rebuilt.count == 120
    with pytest.raises(ValueError, match="square"):
        ClassificationMetric.from_confusion(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        ClassificationMetric.from_confusion(torch.zeros(2, 2))


def test_all_reduce_without_distributed_is_a_no_op() -> None:
    metric = ClassificationMetric(3)
    metric.update(*random_case(0, "continuous", 3, 20))
    before = metric.compute()
    metric.all_reduce()
    assert metric.compute() == before


def test_all_reduce_over_two_gloo_ranks(tmp_path: Path) -> None:
    logits, labels = random_case(7, "ties", 5, 70)
    torch.save({"logits": logits, "labels": labels, "bounds": [0, 45, 70]}, tmp_path / "data.pt")  # uneven shards
    worker = Path(__file__).with_name("_dist_worker.py")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if "GLOO_SOCKET_IFNAME" not in env and Path("/sys/class/net/lo").exists():
        env["GLOO_SOCKET_IFNAME"] = "lo"   # loopback: no dependence on the machine's network setup
    ranks = [subprocess.Popen([sys.executable, str(worker), str(rank), "2", str(tmp_path / "store"),
                               str(tmp_path / "data.pt"), str(tmp_path / f"rank{rank}.json")],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for rank in range(2)]
    try:
        outputs = [process.communicate(timeout=120)[0] for process in ranks]
    finally:
        for process in ranks:
            process.kill()
    assert [p.returncode for p in ranks] == [0, 0], outputs
    single = ClassificationMetric(5, topk=(1, 3))
    single.update(logits, labels)
    for rank in range(2):
        result = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert result["metrics"] == single.compute()
        assert result["confusion"] == single.confusion.tolist()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_counts_equal_cpu_counts() -> None:
    logits, labels = random_case(11, "ties", 10, 5000)   # heavy ties: argmax order must agree across devices
    cpu, gpu = ClassificationMetric(10), ClassificationMetric(10)
    cpu.update(logits, labels)
    gpu.update(logits.cuda().float(), labels.cuda())
    assert gpu.confusion.device.type == "cuda"
    assert torch.equal(gpu.confusion.cpu(), cpu.confusion)
    assert gpu.compute() == cpu.compute()


def test_topk_predictions() -> None:
    logits = torch.tensor([[1.0, 3.0, 3.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    got = topk_predictions(logits, 3, ["a", "b", "c", "d"])
    probs = torch.softmax(logits, 1)
    assert [name for name, _ in got[0]] == ["b", "c", "a"]          # tie b/c: lower index first
    assert [name for name, _ in got[1]] == ["a", "b", "c"]
    assert [p for _, p in got[0]] == pytest.approx(probs[0, [1, 2, 0]].tolist())
    clipped = topk_predictions(logits, 10)
    assert len(clipped[0]) == 4 and clipped[0][0][0] == "1"         # k clipped to K; default names
    assert sum(p for _, p in clipped[0]) == pytest.approx(1.0)
    metric = ClassificationMetric(4)
    metric.update(logits, torch.tensor([1, 0]))
    assert metric.compute()["top1"] == 1.0                          # the metric predicts what this lists first
    with pytest.raises(ValueError, match="k must be"):
        topk_predictions(logits, 0)
    with pytest.raises(ValueError, match="class_names"):
        topk_predictions(logits, 1, ["a"])
