"""The miners against an obviously correct search over every triplet of small random batches."""
from __future__ import annotations

import itertools

import pytest
import torch
from torch import Tensor

from ninshiki.models.verify.losses import pairwise_distances, triplet_loss
from ninshiki.models.verify.mining import Triplets, batch_all, batch_hard, label_masks, mine, semi_hard


def _batch(seed: int, *, size: int = 12, identities: int = 4, dim: int = 3) -> tuple[Tensor, Tensor]:
    """Random embeddings and labels; some identities may have one member (anchors without positives)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(size, dim, generator=g, dtype=torch.float64), torch.randint(identities, (size,), generator=g)


def _as_set(triplets: Triplets) -> set[tuple[int, int, int]]:
    return set(zip(triplets.anchor.tolist(), triplets.positive.tolist(), triplets.negative.tolist()))


def _brute_batch_hard(dist: Tensor, labels: list[int]) -> set[tuple[int, int, int]]:
    out = set()
    for a in range(len(labels)):
        pos = [j for j in range(len(labels)) if j != a and labels[j] == labels[a]]
        neg = [j for j in range(len(labels)) if labels[j] != labels[a]]
        if pos and neg:
            out.add((a, max(pos, key=lambda j: dist[a, j]), min(neg, key=lambda j: dist[a, j])))
    return out


def _brute_semi_hard(dist: Tensor, labels: list[int]) -> set[tuple[int, int, int]]:
    out = set()
    for a, p in itertools.permutations(range(len(labels)), 2):
        neg = [j for j in range(len(labels)) if labels[j] != labels[a]]
        if labels[a] != labels[p] or not neg:
            continue
        farther = [j for j in neg if dist[a, j] > dist[a, p]]
        out.add((a, p, min(farther, key=lambda j: dist[a, j]) if farther else max(neg, key=lambda j: dist[a, j])))
    return out


def _brute_batch_all(labels: list[int]) -> set[tuple[int, int, int]]:
    return {(a, p, n) for a, p, n in itertools.product(range(len(labels)), repeat=3)
            if a != p and labels[a] == labels[p] and labels[n] != labels[a]}


def _brute_loss(dist: Tensor, triplets: set[tuple[int, int, int]], margin: float, *, active_only: bool) -> float:
    losses = [max(0.0, float(dist[a, p] - dist[a, n]) + margin) for a, p, n in triplets]
    count = sum(v > 0 for v in losses) if active_only else len(losses)
    return sum(losses) / max(count, 1)


@pytest.mark.parametrize("seed", range(6))
def test_batch_hard_matches_brute_force(seed: int) -> None:
    x, labels = _batch(seed)
    dist = pairwise_distances(x)
    expected = _brute_batch_hard(dist, labels.tolist())
    assert _as_set(batch_hard(dist, labels)) == expected
    loss = triplet_loss(x, labels, margin=0.5, mining="batch_hard")["loss"]
    assert float(loss) == pytest.approx(_brute_loss(dist, expected, 0.5, active_only=False), rel=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_semi_hard_matches_brute_force(seed: int) -> None:
    x, labels = _batch(seed)
    dist = pairwise_distances(x, metric="sqeuclidean")
    expected = _brute_semi_hard(dist, labels.tolist())
    selected = semi_hard(dist, labels)
    assert len(selected) == len(expected) and _as_set(selected) == expected
    loss = triplet_loss(x, labels, margin=2.0, mining="semi_hard", metric="sqeuclidean")["loss"]
    assert float(loss) == pytest.approx(_brute_loss(dist, expected, 2.0, active_only=False), rel=1e-12)


def test_semi_hard_prefers_a_semi_hard_negative_and_falls_back_to_the_farthest() -> None:
    # 1-D points: anchor 0 at 0, its positive at 1; negatives at 0.5 (hard), 1.5 and 3 (farther than 1).
    x = torch.tensor([[0.0], [1.0], [0.5], [1.5], [3.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 2, 3])
    chosen = {(a, p): n for a, p, n in _as_set(semi_hard(pairwise_distances(x), labels))}
    assert chosen[(0, 1)] == 3                      # the nearest negative beyond d(a, p) = 1
    # anchor 1 (at 1), positive 0 at distance 1: negatives at 0.5, 0.5 and 2 -> 3.0 is the only one farther
    assert chosen[(1, 0)] == 4
    # with the positive far away, no negative is farther: fall back to the farthest negative
    x[1, 0] = 10.0
    chosen = {(a, p): n for a, p, n in _as_set(semi_hard(pairwise_distances(x), labels))}
    assert chosen[(0, 1)] == 4


@pytest.mark.parametrize("seed", range(4))
def test_batch_all_matches_brute_force(seed: int) -> None:
    x, labels = _batch(seed, size=10)
    dist = pairwise_distances(x)
    expected = _brute_batch_all(labels.tolist())
    selected = batch_all(dist, labels)
    assert len(selected) == len(expected) and _as_set(selected) == expected
    out = triplet_loss(x, labels, margin=1.0, mining="batch_all")
    assert float(out["loss"]) == pytest.approx(_brute_loss(dist, expected, 1.0, active_only=True), rel=1e-12)
    active = sum(float(dist[a, p] - dist[a, n]) + 1.0 > 0 for a, p, n in expected) / len(expected)
    assert float(out["active_triplets"]) == pytest.approx(active)


def test_a_p_by_k_batch_gives_one_batch_hard_triplet_per_anchor_and_the_batch_all_count() -> None:
    p, k = 4, 3
    labels = torch.arange(p).repeat_interleave(k)
    dist = pairwise_distances(torch.randn(p * k, 5))
    assert len(batch_hard(dist, labels)) == p * k
    assert len(semi_hard(dist, labels)) == p * k * (k - 1)
    assert len(batch_all(dist, labels)) == p * k * (k - 1) * (p - 1) * k


def test_batches_without_valid_triplets_select_nothing() -> None:
    dist = pairwise_distances(torch.randn(4, 2))
    for labels in (torch.zeros(4, dtype=torch.int64), torch.arange(4)):   # one identity; no identity twice
        for strategy in ("batch_hard", "semi_hard", "batch_all"):
            assert len(mine(dist, labels, strategy)) == 0


def test_label_masks_exclude_the_diagonal() -> None:
    positive, negative = label_masks(torch.tensor([3, 3, 7]))
    assert positive.tolist() == [[False, True, False], [True, False, False], [False, False, False]]
    assert negative.tolist() == [[False, False, True], [False, False, True], [True, True, False]]


def test_unknown_strategy_and_bad_labels_are_errors() -> None:
    dist = torch.zeros(3, 3)
    with pytest.raises(ValueError, match="unknown mining strategy 'hardest'"):
        mine(dist, torch.arange(3), "hardest")
    with pytest.raises(ValueError, match=r"shape \(B,\)"):
        label_masks(torch.zeros(3, 1))
    with pytest.raises(ValueError, match="not \\(B, B\\)"):
        batch_all(torch.zeros(2, 2), torch.arange(3))
