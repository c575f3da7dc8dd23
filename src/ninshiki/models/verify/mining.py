"""Triplet mining inside a batch: which (anchor, positive, negative) triplets a triplet loss sees.

All miners work on the (B, B) distance matrix of the batch with boolean label masks, never with Python loops:
- `batch_hard`: Hermans, Beyer and Leibe, "In Defense of the Triplet Loss for Person Re-Identification"
  (arXiv:1703.07737, 2017): per anchor, its farthest positive and its nearest negative.
- `semi_hard`: Schroff, Kalenichenko and Philbin, "FaceNet" (CVPR 2015), section 3.2: every anchor-positive
  pair with a negative farther than the positive (the nearest such one), as TensorFlow Addons'
  `triplet_semihard_loss` implements it.
- `batch_all`: every valid triplet of the batch (Hermans et al.'s "batch all").
"""
from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor

Mining = Literal["batch_hard", "semi_hard", "batch_all"]
MINING_STRATEGIES: tuple[str, ...] = ("batch_hard", "semi_hard", "batch_all")


class Triplets(NamedTuple):
    """Indices into the batch of the selected triplets, one entry per triplet."""
    anchor: Tensor     # (T,) int64
    positive: Tensor   # (T,) int64
    negative: Tensor   # (T,) int64

    def __len__(self) -> int:  # NamedTuple's len would be 3, the number of fields
        return int(self.anchor.numel())


def label_masks(labels: Tensor) -> tuple[Tensor, Tensor]:
    """Boolean masks of the positive pairs (same label, i != j) and the negative pairs (different labels).

    Shape:
        - labels: (B,) integer identities.
        - Output: two (B, B) bool tensors.
    """
    if labels.dim() != 1:
        raise ValueError(f"labels must be one identity per embedding, shape (B,); got {tuple(labels.shape)}")
    same = labels[:, None] == labels[None, :]                            # (B, B)
    eye = torch.eye(labels.numel(), dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


def batch_hard(dist: Tensor, labels: Tensor) -> Triplets:
    """The hardest positive (farthest) and hardest negative (nearest) of every anchor.

    Anchors without a positive or without a negative in the batch are left out, so a P x K batch with
    K >= 2 and P >= 2 gives exactly B triplets. Ties go to the lowest index.

    Shape:
        - dist: (B, B) distances; labels: (B,).
        - Output: `Triplets` of T <= B entries.
    """
    positive, negative = label_masks(labels)
    far = torch.finfo(dist.dtype).max
    hardest_pos = dist.masked_fill(~positive, -1.0).argmax(dim=1)        # (B,) distances are >= 0
    hardest_neg = dist.masked_fill(~negative, far).argmin(dim=1)         # (B,)
    valid = positive.any(dim=1) & negative.any(dim=1)                    # (B,)
    anchor = valid.nonzero().squeeze(1)                                  # (T,)
    return Triplets(anchor, hardest_pos[anchor], hardest_neg[anchor])


def semi_hard(dist: Tensor, labels: Tensor) -> Triplets:
    """FaceNet's semi-hard negatives: for every anchor-positive pair, the nearest negative farther than
    the positive.

    FaceNet trains on all anchor-positive pairs with negatives that satisfy d(a, p) < d(a, n), "semi-hard"
    when also within the margin; the nearest such negative is the hardest of them, and when it lies beyond
    the margin the triplet simply costs nothing. When every negative is nearer than the positive (no
    semi-hard negative exists), TensorFlow Addons' `triplet_semihard_loss` falls back to the farthest
    negative, the easiest of the hard ones, which avoids the collapse that the hardest negatives cause early
    in training (FaceNet, section 3.2). This function does the same. Pairs whose anchor has no negative at
    all are left out. Ties go to the lowest index.

    Shape:
        - dist: (B, B) distances; labels: (B,).
        - Output: `Triplets` with one entry per anchor-positive pair that has a negative.
    """
    positive, negative = label_masks(labels)
    has_negative = negative.any(dim=1)                                   # (B,)
    anchor, pos = (positive & has_negative[:, None]).nonzero(as_tuple=True)   # (T,) each
    d_an = dist[anchor]                                                  # (T, B)
    neg_mask = negative[anchor]                                          # (T, B)
    farther = neg_mask & (d_an > dist[anchor, pos][:, None])             # (T, B)
    far = torch.finfo(dist.dtype).max
    nearest_farther = d_an.masked_fill(~farther, far).argmin(dim=1)      # (T,)
    farthest = d_an.masked_fill(~neg_mask, -1.0).argmax(dim=1)           # (T,)
    neg = torch.where(farther.any(dim=1), nearest_farther, farthest)     # (T,)
    return Triplets(anchor, pos, neg)


def batch_all(dist: Tensor, labels: Tensor) -> Triplets:
    """Every valid triplet: a and p share a label (a != p), n has another one.

    A P x K batch gives P K (K - 1) (P - 1) K triplets: 47,616 for 32 x 4, held as three index vectors.

    Shape:
        - dist: (B, B) distances (only its size is used); labels: (B,).
        - Output: `Triplets` of every valid triplet, in (anchor, positive, negative) lexicographic order.
    """
    if dist.shape != (labels.numel(), labels.numel()):
        raise ValueError(f"dist {tuple(dist.shape)} is not (B, B) for B = {labels.numel()} labels")
    positive, negative = label_masks(labels)
    valid = positive[:, :, None] & negative[:, None, :]                  # (B, B, B)
    anchor, pos, neg = valid.nonzero(as_tuple=True)                      # (T,) each
    return Triplets(anchor, pos, neg)


def mine(dist: Tensor, labels: Tensor, strategy: str) -> Triplets:
    """The triplets `strategy` ("batch_hard", "semi_hard" or "batch_all") selects from a batch.

    Selection is done without gradients; the loss gathers the selected distances from `dist` itself.
    """
    miners = {"batch_hard": batch_hard, "semi_hard": semi_hard, "batch_all": batch_all}
    if strategy not in miners:
        raise ValueError(f"unknown mining strategy {strategy!r}; expected one of {', '.join(MINING_STRATEGIES)}")
    with torch.no_grad():
        return miners[strategy](dist.detach(), labels)
