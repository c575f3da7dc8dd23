"""Verification metrics against scikit-learn, hand-worked cases and brute-force references."""
from __future__ import annotations

import json
from itertools import pairwise

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score, roc_curve

from ninshiki.metrics.verification import (
    VerificationMetric,
    auc,
    best_threshold,
    eer,
    far_key,
    identification_accuracy,
    kfold_accuracy,
    pair_scores,
    roc,
    tar_at_far,
)


def random_pairs(seed: int, n: int = 400, tied: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Same pairs score higher on average; `tied` rounds scores to a coarse grid so many tie."""
    rng = np.random.default_rng(seed)
    same = rng.random(n) < 0.35
    scores = rng.normal(size=n) + 1.2 * same
    return (np.round(scores, 1) if tied else scores), same


@pytest.mark.parametrize("seed,tied", [(0, False), (1, True), (2, True)])
@pytest.mark.parametrize("drop", [True, False])
def test_roc_is_sklearn(seed: int, tied: bool, drop: bool) -> None:
    scores, same = random_pairs(seed, tied=tied)
    ours = roc(scores, same, drop_intermediate=drop)
    for mine, theirs in zip(ours, roc_curve(same, scores, drop_intermediate=drop)):
        np.testing.assert_array_equal(mine, theirs)


@pytest.mark.parametrize("seed,tied", [(0, False), (3, True), (4, True)])
def test_auc_is_roc_auc_score(seed: int, tied: bool) -> None:
    scores, same = random_pairs(seed, tied=tied)
    assert auc(scores, same) == pytest.approx(roc_auc_score(same, scores), abs=1e-12)
    assert auc(torch.tensor(scores), torch.tensor(same)) == pytest.approx(roc_auc_score(same, scores), abs=1e-12)


@pytest.mark.parametrize("same_scores,diff_scores,expected", [
    ([3.0, 4.0], [1.0, 2.0], 0.0),                 # separable
    ([1.0, 3.0], [2.0, 0.0], 0.5),                 # FAR = FRR = 1/2 on a ROC point (threshold 2)
    ([0.9, 0.7, 0.4], [0.8, 0.3, 0.2, 0.1], 0.25),  # crossing on a vertical segment: FAR stays 1/4
    ([1.0, 0.5], [0.5, 0.0], 0.25),                # tied pair: the diagonal (0, .5) -> (.5, 1) crosses at 1/4
    ([0.0, 1.0], [2.0, 3.0], 1.0),                 # reversed scores
])
def test_eer_hand_cases(same_scores: list[float], diff_scores: list[float], expected: float) -> None:
    scores = np.r_[same_scores, diff_scores]
    same = np.r_[np.ones(len(same_scores), bool), np.zeros(len(diff_scores), bool)]
    assert eer(scores, same) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", [5, 6])
def test_eer_is_bracketed_by_the_operating_points(seed: int) -> None:
    """An interpolated EER lies between the best mean error and the best worse-of-two error of any threshold."""
    scores, same = random_pairs(seed, tied=seed == 6)
    far, tar, _ = roc_curve(same, scores, drop_intermediate=False)
    frr = 1 - tar
    value = eer(scores, same)
    assert ((far + frr) / 2).min() - 1e-12 <= value <= np.maximum(far, frr).min() + 1e-12


def test_tar_at_far_hand_cases() -> None:
    scores = np.r_[0.9, 0.8, 0.6, 0.3, 0.7, 0.5, 0.4, 0.2, 0.1]
    same = np.r_[np.ones(4, bool), np.zeros(5, bool)]          # 5 different pairs: FAR moves in steps of 0.2
    for target, expected in [(0.0, 0.5), (0.19, 0.5), (0.2, 0.75), (0.4, 0.75), (0.59, 0.75), (0.6, 1.0),
                             (1.0, 1.0)]:
        assert tar_at_far(scores, same, target) == expected, target


def test_tar_at_far_never_splits_ties() -> None:
    scores, same = np.r_[0.9, 0.5, 0.5, 0.1], np.r_[True, True, False, False]
    assert tar_at_far(scores, same, 0.49) == 0.5      # 0.5 cannot be accepted without its tied different pair
    assert tar_at_far(scores, same, 0.5) == 1.0


def test_tar_at_far_reads_points_roc_curve_drops() -> None:
    """Equal scores for same and different pairs make a diagonal that drop_intermediate collapses."""
    scores, same = np.tile([4.0, 3.0, 2.0, 1.0], 2), np.repeat([True, False], 4)
    far, tar, _ = roc(scores, same)
    np.testing.assert_array_equal(far, [0, 0.25, 1])         # (.5, .5) and (.75, .75) dropped
    assert tar[far <= 0.6].max() == 0.25
    assert tar_at_far(scores, same, 0.6) == 0.5


@pytest.mark.parametrize("seed", [7, 8])
def test_tar_at_far_brute_force(seed: int) -> None:
    scores, same = random_pairs(seed, n=300, tied=seed == 8)
    for target in (0.0, 1e-3, 1e-2, 0.05, 0.3):
        best = 0.0
        for t in np.r_[np.inf, np.unique(scores)]:
            accepted = scores >= t
            if accepted[~same].mean() <= target:
                best = max(best, accepted[same].mean())
        assert tar_at_far(scores, same, target) == best


def brute_force_kfold(scores: np.ndarray, same: np.ndarray, folds: np.ndarray) -> tuple[list[float], list[float]]:
    """Every candidate threshold tried in a plain loop, from the highest down; the first best one is kept."""
    accuracies, thresholds = [], []
    for k in np.unique(folds):
        train_s, train_y = scores[folds != k], same[folds != k]
        values = sorted(set(train_s.tolist()), reverse=True)
        candidates = [np.nextafter(values[0], np.inf)] + [(hi + lo) / 2 for hi, lo in pairwise(values)]
        candidates.append(values[-1])
        best_t, best_acc = None, -1.0
        for t in candidates:
            acc = sum((s >= t) == y for s, y in zip(train_s, train_y)) / len(train_s)
            if acc > best_acc:
                best_t, best_acc = t, acc
        held_s, held_y = scores[folds == k], same[folds == k]
        accuracies.append(sum((s >= best_t) == y for s, y in zip(held_s, held_y)) / len(held_s))
        thresholds.append(best_t)
    return accuracies, thresholds


@pytest.mark.parametrize("seed,tied", [(9, False), (10, True)])
def test_kfold_accuracy_brute_force(seed: int, tied: bool) -> None:
    scores, same = random_pairs(seed, n=200, tied=tied)
    folds = np.arange(200) % 5
    result = kfold_accuracy(scores, same, folds)
    accuracies, thresholds = brute_force_kfold(scores, same, folds)
    np.testing.assert_array_equal(result.accuracies, accuracies)
    np.testing.assert_allclose(result.thresholds, thresholds, rtol=0, atol=1e-12)
    assert result.mean == pytest.approx(np.mean(accuracies)) and result.std == pytest.approx(np.std(accuracies))
    np.testing.assert_array_equal(result.folds, np.arange(5))


def test_best_threshold_hand_cases() -> None:
    assert best_threshold([0.9, 0.7, 0.3, 0.1], [True, True, False, False]) == (0.5, 1.0)  # midway in the gap
    assert best_threshold([0.9, 0.8], [True, True]) == (0.8, 1.0)                       # accept all
    threshold, accuracy = best_threshold([0.9, 0.8], [False, False])                    # accept none
    assert threshold > 0.9 and accuracy == 1.0
    # accepting {0.9} or {0.9, 0.7, 0.5} are both 3/4 right: the higher threshold wins
    assert best_threshold([0.9, 0.7, 0.5, 0.3], [True, False, True, False]) == (0.8, 0.75)


def test_kfold_separable_is_perfect() -> None:
    scores = np.r_[np.linspace(1, 2, 20), np.linspace(-2, -1, 20)]
    same = np.r_[np.ones(20, bool), np.zeros(20, bool)]
    result = kfold_accuracy(scores, same, np.arange(40) % 4)
    assert result.mean == 1.0 and result.std == 0.0
    assert (result.thresholds > -1).all() and (result.thresholds < 1).all()


def unit(degrees: float) -> list[float]:
    return [np.cos(np.radians(degrees)), np.sin(np.radians(degrees))]


def test_identification_hand_example() -> None:
    """Six identities every 60 degrees; the probes' true identities rank 1, 2, 5 and 6."""
    gallery = np.array([unit(d) for d in range(0, 360, 60)])
    gallery_labels = list("abcdef")
    probes = np.array([unit(10), unit(50), unit(100), unit(170)])
    probe_labels = ["a", "a", "e", "a"]
    expected = {"rank1": 0.25, "rank2": 0.5, "rank5": 0.75, "rank6": 1.0}
    for metric in ("cosine", "l2"):
        got = identification_accuracy(gallery, gallery_labels, probes, probe_labels, ks=(1, 2, 5, 6, 7),
                                      metric=metric)
        assert got == expected                                  # rank-7 > 6 identities: left out
        assert identification_accuracy(gallery, gallery_labels, probes, probe_labels, ks=(1, 2, 5, 6),
                                       metric=metric, chunk=1) == expected
    # a second gallery image of "a" at 45 degrees: the 50-degree probe ranks 1, the 170-degree one 5 (125 degrees
    # from "a" at 45, behind d, c, e, b; ahead of f at 130)
    more = identification_accuracy(np.r_[gallery, [unit(45)]], gallery_labels + ["a"], probes, probe_labels)
    assert more == {"rank1": 0.5, "rank5": 1.0}


def test_identification_ties_and_metric() -> None:
    gallery, labels = np.array([[1.0, 0.0], [10.0, 0.0]]), np.array([0, 1])
    probe = torch.tensor([[2.0, 0.0]])
    assert identification_accuracy(gallery, labels, probe, [0], ks=(1,))["rank1"] == 0.0   # cosine tie: counted
    assert identification_accuracy(gallery, labels, probe, [0], ks=(1,), metric="l2")["rank1"] == 1.0
    with pytest.raises(ValueError, match="absent from the gallery"):
        identification_accuracy(gallery, labels, probe, [2])
    with pytest.raises(ValueError, match="metric"):
        identification_accuracy(gallery, labels, probe, [0], metric="dot")


def test_pair_scores_match_torch() -> None:
    a, b = torch.randn(16, 8, generator=torch.Generator().manual_seed(0)), torch.randn(16, 8)
    np.testing.assert_allclose(pair_scores(a, b), torch.nn.functional.cosine_similarity(a, b).numpy(), atol=1e-6)
    np.testing.assert_allclose(pair_scores(a, b, "l2"), -torch.linalg.vector_norm(a - b, dim=1).numpy(), atol=1e-5)


@pytest.mark.parametrize("same", [np.ones(6, bool), np.zeros(6, bool)])
def test_degenerate_labels_are_errors(same: np.ndarray) -> None:
    scores = np.arange(6.0)
    for fn in (roc, auc, eer, lambda s, y: tar_at_far(s, y, 0.1), lambda s, y: kfold_accuracy(s, y, np.arange(6) % 2)):
        with pytest.raises(ValueError, match="both same and different pairs"):
            fn(scores, same)
    metric = VerificationMetric()
    metric.update(scores, same)
    with pytest.raises(ValueError, match="both same and different pairs"):
        metric.compute()


def test_bad_inputs_are_errors() -> None:
    with pytest.raises(ValueError, match="NaN"):
        auc([0.1, np.nan], [True, False])
    with pytest.raises(ValueError, match="3 scores for 2"):
        auc([0.1, 0.2, 0.3], [True, False])
    with pytest.raises(ValueError, match="booleans"):
        auc([0.1, 0.2], [2, 0])
    with pytest.raises(ValueError, match="at least 2 folds"):
        kfold_accuracy([0.1, 0.2], [True, False], [3, 3])
    with pytest.raises(ValueError, match="target FAR"):
        tar_at_far([0.1, 0.2], [True, False], 1.5)


def test_metric_matches_the_functions() -> None:
    scores, same = random_pairs(11, n=600)
    folds = np.arange(600) // 60
    metric = VerificationMetric()
    for lo in range(0, 600, 128):
        metric.update(torch.tensor(scores[lo:lo + 128]), torch.tensor(same[lo:lo + 128]), folds[lo:lo + 128])
    out = metric.compute()
    assert list(out) == ["auc", "eer", "tar@far=1e-2", "tar@far=1e-3", "best_acc", "best_acc_std", "threshold"]
    kfold = kfold_accuracy(scores, same, folds)
    assert out["auc"] == pytest.approx(roc_auc_score(same, scores), abs=1e-12)
    assert out["eer"] == eer(scores, same)
    assert out["tar@far=1e-2"] == tar_at_far(scores, same, 1e-2)
    assert out["tar@far=1e-3"] == tar_at_far(scores, same, 1e-3)
    assert (out["best_acc"], out["best_acc_std"]) == (kfold.mean, kfold.std)
    assert out["threshold"] == best_threshold(scores, same)[0]
    json.dumps(out, allow_nan=False)
    metric.reset()
    assert metric.count == 0


def test_metric_deals_folds_when_none_given() -> None:
    scores, same = random_pairs(12, n=100)
    metric = VerificationMetric(num_folds=4, fars=(0.05,))
    metric.update(scores, same)
    _, _, fold = metric.pairs()
    for kind in (True, False):
        np.testing.assert_array_equal(fold[same == kind], np.arange(int((same == kind).sum())) % 4)
    out = metric.compute()
    assert "tar@far=5e-2" in out and out["best_acc"] == kfold_accuracy(scores, same, fold).mean
    with pytest.raises(ValueError, match="every update or with none"):
        metric.update(scores, same, np.zeros(100, dtype=np.int64))


def test_far_keys() -> None:
    assert [far_key(f) for f in (1e-2, 1e-3, 1e-4, 5e-4, 0.015)] == [
        "tar@far=1e-2", "tar@far=1e-3", "tar@far=1e-4", "tar@far=5e-4", "tar@far=0.015"]
