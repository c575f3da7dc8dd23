"""Distances, the triplet and contrastive losses: against plain loops, at degenerate inputs, and in training."""
from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import Tensor, nn

from ninshiki.models.verify.losses import contrastive_loss, pair_statistics, pairwise_distances, triplet_loss

MINING = ("batch_hard", "semi_hard", "batch_all")
METRICS = ("euclidean", "sqeuclidean", "cosine")


def _loop_distance(a: Tensor, b: Tensor, metric: str) -> float:
    if metric == "cosine":
        return float(1 - (a @ b) / (a.norm() * b.norm()))
    squared = float(((a - b) ** 2).sum())
    return squared if metric == "sqeuclidean" else squared ** 0.5


@pytest.mark.parametrize("metric", METRICS)
def test_pairwise_distances_match_a_loop(metric: str) -> None:
    x = torch.randn(7, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    dist = pairwise_distances(x, metric=metric)
    expected = torch.tensor([[_loop_distance(a, b, metric) for b in x] for a in x], dtype=torch.float64)
    torch.testing.assert_close(dist, expected, rtol=1e-9, atol=1e-9)
    assert torch.equal(dist, dist.T) and torch.equal(dist.diagonal(), torch.zeros(7, dtype=torch.float64))


def test_distances_of_near_identical_embeddings_are_accurate_in_float32() -> None:
    # The product form ||a||^2 + ||b||^2 - 2 a.b was off by 5e-4 here, half the 1e-3 distances themselves.
    g = torch.Generator().manual_seed(0)
    x = F.normalize(torch.randn(64, 128, generator=g), dim=1)
    x = torch.cat([x, x + 1e-4 * torch.randn(64, 128, generator=g)])     # (128, 128)
    reference = pairwise_distances(x.double())
    torch.testing.assert_close(pairwise_distances(x).double(), reference, rtol=0, atol=2e-6)
    assert reference.diagonal(offset=64).max() < 2e-3


def test_half_precision_is_computed_in_float32() -> None:
    x = torch.randn(6, 8)
    dist = pairwise_distances(x.half())
    assert dist.dtype == torch.float32
    torch.testing.assert_close(dist, pairwise_distances(x.half().float()), rtol=0, atol=0)


@pytest.mark.parametrize("metric", METRICS)
def test_gradients_are_finite_when_embeddings_coincide(metric: str) -> None:
    # A collapsed network: every embedding the same, and a batch where only some coincide.
    collapsed = F.normalize(torch.ones(6, 4), dim=1)
    partly = torch.cat([collapsed[:3], F.normalize(torch.randn(3, 4), dim=1)])
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    for base in (collapsed, partly):
        for loss in (*MINING, "contrastive"):
            x = base.clone().requires_grad_(True)
            out = (contrastive_loss(x, labels, metric=metric) if loss == "contrastive"
                   else triplet_loss(x, labels, mining=loss, metric=metric))
            out["loss"].backward()
            assert torch.isfinite(out["loss"]) and torch.isfinite(x.grad).all()


def test_collapsed_embeddings_cost_the_margin() -> None:
    x = torch.zeros(6, 3)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    for mining in MINING:
        assert float(triplet_loss(x, labels, margin=0.3, mining=mining)["loss"]) == pytest.approx(0.3)
    assert float(contrastive_loss(x, labels, margin=1.0)["loss"]) == pytest.approx(0.5 * 12 / 15)  # 12 negative pairs


def _separated(scale: float) -> tuple[Tensor, Tensor]:
    """Three identities, each a single point (4 copies) on its own axis: positives at 0, negatives apart."""
    labels = torch.arange(3).repeat_interleave(4)
    return F.one_hot(labels, 3).double() * scale, labels


@pytest.mark.parametrize("mining", MINING)
@pytest.mark.parametrize("metric", METRICS)
def test_triplet_loss_is_zero_when_identities_are_separated_beyond_the_margin(mining: str, metric: str) -> None:
    x, labels = _separated(1.0)     # negatives at sqrt(2) (euclidean), 2 (squared), 1 (cosine)
    out = triplet_loss(x, labels, margin=0.9, mining=mining, metric=metric)
    assert float(out["loss"]) == 0.0 and float(out["active_triplets"]) == 0.0
    assert float(out["mean_pos_dist"]) == 0.0
    # and not once the margin exceeds the negative distance
    assert float(triplet_loss(x, labels, margin=2.5, mining=mining, metric=metric)["loss"]) > 0


def test_contrastive_loss_matches_a_loop_and_is_zero_when_separated() -> None:
    x = torch.randn(8, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 3])
    terms = []
    for i, j in itertools.combinations(range(8), 2):
        d = _loop_distance(x[i], x[j], "euclidean")
        terms.append(0.5 * d * d if labels[i] == labels[j] else 0.5 * max(0.0, 1.5 - d) ** 2)
    out = contrastive_loss(x, labels, margin=1.5)
    assert float(out["loss"]) == pytest.approx(sum(terms) / len(terms), rel=1e-12)
    assert float(out["active_pairs"]) == pytest.approx(sum(t > 0 for t in terms) / len(terms))
    separated, labels = _separated(1.0)
    assert float(contrastive_loss(separated, labels, margin=1.4)["loss"]) == 0.0


def test_pair_statistics_average_every_pair() -> None:
    dist = pairwise_distances(torch.tensor([[0.0], [1.0], [3.0]]))
    stats = pair_statistics(dist, torch.tensor([0, 0, 1]))
    assert float(stats["mean_pos_dist"]) == 1.0 and float(stats["mean_neg_dist"]) == pytest.approx(2.5)  # 3, 2
    assert torch.isnan(pair_statistics(dist, torch.arange(3))["mean_pos_dist"])


def test_bad_arguments_are_errors() -> None:
    x, labels = torch.randn(4, 2), torch.tensor([0, 0, 1, 1])
    with pytest.raises(ValueError, match="unknown distance metric 'manhattan'"):
        pairwise_distances(x, metric="manhattan")
    with pytest.raises(ValueError, match="margin must be >= 0"):
        triplet_loss(x, labels, margin=-0.1)
    with pytest.raises(ValueError, match="margin must be > 0"):
        contrastive_loss(x, labels, margin=0.0)
    with pytest.raises(ValueError, match="integer identities"):
        triplet_loss(x, labels.float())
    with pytest.raises(ValueError, match=r"labels \(B,\)"):
        triplet_loss(x, labels[:3])


def _separation(net: Callable[[Tensor], Tensor], x: Tensor, labels: Tensor) -> float:
    """Mean negative over mean positive distance of held-out embeddings (1 for a random map, larger is better)."""
    with torch.no_grad():
        stats = pair_statistics(pairwise_distances(net(x)), labels)
    return float(stats["mean_neg_dist"] / stats["mean_pos_dist"])


@pytest.mark.parametrize("loss", ["batch_hard", "semi_hard", "batch_all", "contrastive"])
def test_a_short_training_run_separates_the_digit_classes(loss: str) -> None:
    digits = load_digits()                                               # 1,797 8x8 images bundled with sklearn
    x = torch.tensor(digits.data, dtype=torch.float32) / 16              # (N, 64)
    y = torch.tensor(digits.target)
    train, test = torch.arange(len(y)) % 4 != 0, torch.arange(len(y)) % 4 == 0
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 16))

    def embed(v: Tensor) -> Tensor:
        return F.normalize(net(v), dim=1)

    before = _separation(embed, x[test], y[test])
    optimiser = torch.optim.Adam(net.parameters(), lr=3e-3)
    by_class = [train.logical_and(y == c).nonzero().squeeze(1) for c in range(10)]
    g = torch.Generator().manual_seed(0)
    for _ in range(100):                                                 # P x K = 10 x 4 batches
        index = torch.cat([c[torch.randperm(len(c), generator=g)[:4]] for c in by_class])
        e = embed(x[index])
        out = (contrastive_loss(e, y[index], margin=1.0) if loss == "contrastive"
               else triplet_loss(e, y[index], margin=0.2, mining=loss))
        optimiser.zero_grad()
        out["loss"].backward()
        optimiser.step()
    after = _separation(embed, x[test], y[test])
    assert after > 1.7 * before, (before, after)    # measured: 1.35 -> 2.5-2.7 for every loss
