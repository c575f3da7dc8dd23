"""Metric-learning losses over a batch of embeddings: the triplet loss (Schroff, Kalenichenko and Philbin,
"FaceNet: A Unified Embedding for Face Recognition and Clustering", CVPR 2015) with the miners of `mining`,
and the contrastive loss (Hadsell, Chopra and LeCun, "Dimensionality Reduction by Learning an Invariant
Mapping", CVPR 2006) as a baseline.

Every loss returns a dict: the total under "loss" (with gradients) and detached statistics for the logs.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ninshiki.models.verify.mining import label_masks, mine

DistanceMetric = Literal["euclidean", "sqeuclidean", "cosine"]
METRICS: tuple[str, ...] = ("euclidean", "sqeuclidean", "cosine")


def pairwise_distances(embeddings: Tensor, *, metric: str = "euclidean", eps: float = 1e-12) -> Tensor:
    """All pairwise distances of a batch, accurate for near-identical embeddings and with finite gradients.

    "euclidean" sums the squared differences of every pair (`torch.cdist` without its matrix-product
    shortcut): the product form ||a||^2 + ||b||^2 - 2 a.b cancels catastrophically for close points (on the
    unit sphere, a 1e-3 distance came out 50% wrong in float32), and its square root has an infinite
    derivative at the rounding-noise values it leaves where the distance is 0. Identical embeddings (i = j,
    or a collapsed network) get exactly 0 and a zero gradient. "sqeuclidean" is its square; "cosine" is
    1 - cos(a, b), in [0, 2], with `eps` guarding the normalisation of zero vectors. Half precision inputs
    are computed in float32.

    Shape:
        - embeddings: (B, D).
        - Output: (B, B), symmetric, zero on the diagonal.
    """
    if embeddings.dim() != 2:
        raise ValueError(f"embeddings must be (B, D); got {tuple(embeddings.shape)}")
    if metric not in METRICS:
        raise ValueError(f"unknown distance metric {metric!r}; expected one of {', '.join(METRICS)}")
    x = embeddings.float() if embeddings.dtype in (torch.float16, torch.bfloat16) else embeddings
    if metric == "cosine":
        unit = F.normalize(x, dim=1, eps=eps)
        eye = torch.eye(x.shape[0], dtype=torch.bool, device=x.device)
        return (1.0 - unit @ unit.T).clamp(0.0, 2.0).masked_fill(eye, 0.0)          # (B, B)
    dist = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")          # (B, B)
    return dist.square() if metric == "sqeuclidean" else dist


def pair_statistics(dist: Tensor, labels: Tensor) -> dict[str, Tensor]:
    """Mean distance over all positive pairs and over all negative pairs of the batch (detached; NaN if none).

    Shape:
        - dist: (B, B); labels: (B,).
    """
    positive, negative = label_masks(labels)
    d = dist.detach()
    return {"mean_pos_dist": d[positive].mean() if positive.any() else d.new_tensor(float("nan")),
            "mean_neg_dist": d[negative].mean() if negative.any() else d.new_tensor(float("nan"))}


def triplet_loss(embeddings: Tensor, labels: Tensor, *, margin: float = 0.2, mining: str = "batch_hard",
                 metric: str = "euclidean") -> dict[str, Tensor]:
    """The triplet loss max(0, d(a, p) - d(a, n) + margin) over the triplets that `mining` selects.

    "batch_hard" and "semi_hard" average over every selected triplet (Hermans et al. average over anchors;
    TensorFlow Addons' semi-hard loss over anchor-positive pairs). "batch_all" averages over the triplets
    with a non-zero loss only, as Hermans et al. do: the many easy triplets would otherwise wash the
    gradient out. A batch with no valid triplet (one identity, or no identity twice) gives a zero loss that
    still back-propagates.

    FaceNet uses squared distances with margin 0.2; Hermans et al. found plain Euclidean distances more
    stable, the default here. On the unit sphere both lie in [0, 2] and [0, 4].

    Returns:
        "loss"; "active_triplets", the fraction of selected triplets with a non-zero loss; "triplets", how
        many were selected; "mean_pos_dist" and "mean_neg_dist" over all pairs of the batch.

    Shape:
        - embeddings: (B, D); labels: (B,) integer identities.
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0; got {margin}")
    _check_batch(embeddings, labels)
    dist = pairwise_distances(embeddings, metric=metric)                 # (B, B)
    triplets = mine(dist, labels, mining)
    d_ap = dist[triplets.anchor, triplets.positive]                      # (T,)
    d_an = dist[triplets.anchor, triplets.negative]                      # (T,)
    losses = F.relu(d_ap - d_an + margin)                                # (T,)
    active = losses > 0
    count = active.sum().to(losses.dtype) if mining == "batch_all" else losses.new_tensor(float(len(triplets)))
    loss = losses.sum() / count.clamp_min(1.0)
    stats = {"active_triplets": active.float().mean() if len(triplets) else losses.new_tensor(0.0),
             "triplets": losses.new_tensor(float(len(triplets)))}
    return {"loss": loss, **stats, **pair_statistics(dist, labels)}


def contrastive_loss(embeddings: Tensor, labels: Tensor, *, margin: float = 1.0,
                     metric: str = "euclidean") -> dict[str, Tensor]:
    """Hadsell et al.'s contrastive loss over every pair i < j of the batch, averaged over the pairs.

    Similar pairs cost d^2 / 2, dissimilar ones max(0, margin - d)^2 / 2: they are pushed apart only until
    `margin`. With L2-normalised embeddings the Euclidean distance lies in [0, 2]; the default margin of 1
    asks different identities to be at least 60 degrees apart.

    Returns:
        "loss"; "active_pairs", the fraction of pairs with a non-zero loss; "mean_pos_dist" and
        "mean_neg_dist" over all pairs of the batch.

    Shape:
        - embeddings: (B, D); labels: (B,) integer identities.
    """
    if margin <= 0:
        raise ValueError(f"margin must be > 0; got {margin}")
    _check_batch(embeddings, labels)
    dist = pairwise_distances(embeddings, metric=metric)                 # (B, B)
    positive, negative = label_masks(labels)
    upper = torch.ones_like(positive).triu(diagonal=1)                   # (B, B) each unordered pair once
    similar = dist[positive & upper]                                     # (P,)
    dissimilar = dist[negative & upper]                                  # (N,)
    terms = torch.cat([0.5 * similar.square(), 0.5 * F.relu(margin - dissimilar).square()])   # (P + N,)
    loss = terms.sum() / max(terms.numel(), 1)
    active = (terms > 0).float().mean() if terms.numel() else terms.new_tensor(0.0)
    return {"loss": loss, "active_pairs": active, **pair_statistics(dist, labels)}


def _check_batch(embeddings: Tensor, labels: Tensor) -> None:
    if embeddings.dim() != 2 or labels.shape != (embeddings.shape[0],):
        raise ValueError(f"expected embeddings (B, D) and labels (B,); got {tuple(embeddings.shape)} and "
                         f"{tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integer identities; got dtype {labels.dtype}")
