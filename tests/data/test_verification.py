"""Identity folders, balanced pairs in LFW-style folds, and open-set class splits."""
from __future__ import annotations

from collections import Counter
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from ninshiki.data.formats.pairs import read_pairs, write_pairs
from ninshiki.data.verification import make_folder_pairs, make_pairs, scan_identities, split_identities


def check_pairs(pairs, labels: np.ndarray, folds: int, n_same: int, n_diff: int) -> None:
    """Exact counts per fold, LFW's same-then-different order, true labels, and no pair twice."""
    assert len(pairs) == folds * (n_same + n_diff)
    for k in range(folds):
        in_fold = pairs.same[pairs.fold == k]
        np.testing.assert_array_equal(in_fold, np.r_[np.ones(n_same, bool), np.zeros(n_diff, bool)])
    np.testing.assert_array_equal(pairs.same, labels[pairs.a] == labels[pairs.b])
    assert (pairs.a != pairs.b).all()
    unordered = {(min(a, b), max(a, b)) for a, b in zip(pairs.a.tolist(), pairs.b.tolist())}
    assert len(unordered) == len(pairs)


def test_disjoint_folds_as_lfw() -> None:
    labels = np.repeat(np.arange(40), np.tile([1, 2, 3, 6], 10))   # 40 identities, 10 with a single image
    pairs = make_pairs(labels, n_same=5, n_diff=7, folds=5, seed=3)
    check_pairs(pairs, labels, 5, 5, 7)
    fold_of = {}
    for item, fold in zip(np.r_[pairs.a, pairs.b], np.r_[pairs.fold, pairs.fold]):
        assert fold_of.setdefault(labels[item], fold) == fold       # nobody appears in two folds
    again = make_pairs(labels, n_same=5, n_diff=7, folds=5, seed=3)
    np.testing.assert_array_equal(again.a, pairs.a)
    assert not np.array_equal(make_pairs(labels, n_same=5, n_diff=7, folds=5, seed=4).a, pairs.a)


def test_same_pairs_are_spread_over_identities() -> None:
    """One identity of 200 images (19900 pairs) and nine of 3 (3 pairs each): 30 same pairs take 3 from each."""
    labels = np.r_[np.zeros(200, int), np.repeat(np.arange(1, 10), 3)]
    pairs = make_pairs(labels, n_same=30, n_diff=0, folds=1)
    assert Counter(labels[pairs.a].tolist()) == {k: 3 for k in range(10)}
    even = make_pairs(labels, n_same=21, n_diff=0, folds=1, seed=1)   # 21 = 10 x 2 + 1: counts differ by 1
    assert sorted(Counter(labels[even.a].tolist()).values()) == [2] * 9 + [3]


def test_exhausting_the_pairs_draws_each_once() -> None:
    """Asking for every possible pair checks the pair-number decoding is a bijection."""
    labels = np.array(list("aaaaaaaaaabbbbbcc") + ["d"])
    same_all = [p for p in combinations(range(len(labels)), 2) if labels[p[0]] == labels[p[1]]]
    diff_all = [p for p in combinations(range(len(labels)), 2) if labels[p[0]] != labels[p[1]]]
    pairs = make_pairs(labels, n_same=len(same_all), n_diff=len(diff_all), folds=1)
    got = {(min(a, b), max(a, b)) for a, b in zip(pairs.a.tolist(), pairs.b.tolist())}
    assert got == set(same_all) | set(diff_all)
    with pytest.raises(ValueError, match=r"1 with a single image, which cannot make same pairs\) allow 56 distinct"):
        make_pairs(labels, n_same=len(same_all) + 1, n_diff=1, folds=1)


def test_not_disjoint_for_few_identities() -> None:
    labels = np.repeat(np.arange(4), 25)       # like an open-set split with 4 test classes
    with pytest.raises(ValueError, match="4 identities cannot be dealt into 10 disjoint folds"):
        make_pairs(labels, n_same=10, n_diff=10, folds=10)
    pairs = make_pairs(labels, n_same=10, n_diff=10, folds=10, disjoint=False, seed=2)
    check_pairs(pairs, labels, 10, 10, 10)


def test_folder_pairs_round_trip(class_folder, tmp_path: Path) -> None:
    root = class_folder(per_class={"ann": 4, "bo": 3, "cy": 1, "di": 5, "ed": 2, "flo": 3})
    identities = scan_identities(root)
    assert identities.identities == ("ann", "bo", "cy", "di", "ed", "flo") and identities.single_image == ["cy"]
    assert "1 with a single image (usable in a gallery and in different-identity pairs" in identities.describe()
    pairs = make_folder_pairs(root, n_same=2, n_diff=3, folds=2, seed=0)
    check_pairs(make_pairs(identities.labels, n_same=2, n_diff=3, folds=2, seed=0), identities.labels, 2, 2, 3)
    assert all(p.parent.parent == root for p in pairs.a + pairs.b)
    assert write_pairs(tmp_path / "pairs.txt", pairs) == "simple"     # files are not LFW-named
    again = read_pairs(tmp_path / "pairs.txt")
    assert again.a == pairs.a and again.b == pairs.b
    np.testing.assert_array_equal(again.fold, pairs.fold)
    with pytest.raises(ValueError, match=r"folder: 6 identities, 18 images; 1 with a single image.*fold 3 of 3"):
        make_folder_pairs(identities, n_same=7, n_diff=1, folds=3)


def test_split_identities() -> None:
    labels = np.repeat(np.arange(10), 7)[np.random.default_rng(0).permutation(70)]
    train, test = split_identities(labels, test_classes=[6, 7, 8, 9])
    assert set(labels[test]) == {6, 7, 8, 9} and set(labels[train]) == set(range(6))
    np.testing.assert_array_equal(np.sort(np.r_[train, test]), np.arange(70))
    train, test = split_identities(labels, fraction=0.3, seed=1)
    assert len(set(labels[test])) == 3 and not set(labels[test]) & set(labels[train])
    assert len(train) + len(test) == 70
    names = np.array(["cat", "dog", "cat", "fox"])
    np.testing.assert_array_equal(split_identities(names, test_classes=["cat"])[1], [0, 2])


@pytest.mark.parametrize("kwargs,message", [
    ({"test_classes": [3, 11]}, "test classes not in the labels: 11"),
    ({"test_classes": list(range(10))}, "needs training and test classes"),
    ({}, "exactly one of"),
    ({"test_classes": [1], "fraction": 0.5}, "exactly one of"),
    ({"fraction": 1.0}, r"fraction must be in \(0, 1\)"),
])
def test_split_identities_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        split_identities(np.arange(10), **kwargs)
