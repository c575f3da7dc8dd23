"""Descriptor matching by nearest neighbours: Lowe's ratio test and mutual nearest neighbours.

Lowe (IJCV 2004, section 7.1): a match is kept only when the nearest neighbour is clearly closer than the
second nearest, ``d1 < ratio * d2`` (0.8 in the paper removes 90% of the false matches and 5% of the true
ones). Mutual nearest neighbours (cross-checking) further requires that the query be the nearest neighbour
of its match. Distances are Euclidean.

The search is brute force, exact, in chunks of queries: ``|a|^2 + |b|^2 - 2 a.b`` in float32 picks the
neighbours (exact for SIFT's integer descriptors, whose squared distances stay below 2^24), then the
reported and ratio-tested distances are recomputed in float64 from the vectors themselves.
"""
from __future__ import annotations

import numpy as np
import torch

_CHUNK_ELEMENTS = 1 << 22   # distances held at once: 16 MB of float32


def match_descriptors(a: np.ndarray, b: np.ndarray, *, ratio: float | None = 0.8,
                      mutual: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Match each descriptor of `a` to its nearest neighbour in `b`, keeping the distinctive matches.

    Args:
        a: query descriptors.
        b: descriptors searched.
        ratio: Lowe's ratio test threshold, d1 < ratio * d2; None turns the test off. When `b` has a single
            row there is no second neighbour and the test passes.
        mutual: also require that a[i] be the nearest neighbour of b[j] in `a`.

    Returns:
        pairs: indices (i into a, j into b), in increasing i; ties in distance go to the lowest index.
        distances: ||a[i] - b[j]|| of each pair.

    Shape:
        - a: (Na, D), b: (Nb, D) float.
        - Output: pairs (M, 2) int64, distances (M,) float32, M <= min(Na, Nb) when mutual else M <= Na.
    """
    a = np.ascontiguousarray(a, np.float32)
    b = np.ascontiguousarray(b, np.float32)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"descriptors must be (N, D) arrays of one length D, got {a.shape} and {b.shape}")
    if ratio is not None and not 0 < ratio <= 1:
        raise ValueError(f"ratio must be in (0, 1] or None, got {ratio}")
    if len(a) == 0 or len(b) == 0:
        return np.zeros((0, 2), np.int64), np.zeros(0, np.float32)
    first, second, col_best = _neighbours(torch.from_numpy(a), torch.from_numpy(b))
    rows = np.arange(len(a))                                                     # (Na,)
    d1 = np.linalg.norm(a.astype(np.float64) - b[first], axis=1)                 # (Na,)
    keep = np.ones(len(a), bool)
    if ratio is not None and len(b) > 1:
        d2 = np.linalg.norm(a.astype(np.float64) - b[second], axis=1)            # (Na,)
        keep &= d1 < ratio * d2
    if mutual:
        keep &= col_best[first] == rows
    pairs = np.stack([rows[keep], first[keep]], axis=1).astype(np.int64)         # (M, 2)
    return pairs, d1[keep].astype(np.float32)


def _neighbours(a: torch.Tensor, b: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest and second-nearest row of b for each row of a, and nearest row of a for each row of b.

    Shape:
        - a: (Na, D), b: (Nb, D) float32.
        - Output: first (Na,), second (Na,) (= first when Nb == 1), col_best (Nb,), all int64.
    """
    a_sq, b_sq = (a * a).sum(1), (b * b).sum(1)                                  # (Na,), (Nb,)
    first = torch.empty(len(a), dtype=torch.int64)
    second = torch.empty(len(a), dtype=torch.int64)
    col_min = torch.full((len(b),), float("inf"))
    col_best = torch.zeros(len(b), dtype=torch.int64)
    step = max(1, _CHUNK_ELEMENTS // len(b))
    for start in range(0, len(a), step):
        stop = min(start + step, len(a))
        dist = (a_sq[start:stop, None] + b_sq[None]).addmm_(a[start:stop], b.T, alpha=-2)   # (c, Nb) squared
        best = dist.argmin(1)                                                    # first index of the minimum
        first[start:stop] = best
        chunk_min, chunk_arg = dist.min(0)                                       # (Nb,)
        better = chunk_min < col_min                                             # strict: earlier chunks win ties
        col_min = torch.where(better, chunk_min, col_min)
        col_best = torch.where(better, chunk_arg + start, col_best)
        if len(b) > 1:
            dist.scatter_(1, best[:, None], float("inf"))
            second[start:stop] = dist.argmin(1)
        else:
            second[start:stop] = best
    return first.numpy(), second.numpy(), col_best.numpy()
