"""Verification and identification metrics: ROC, AUC, EER, TAR at fixed FAR, LFW's k-fold accuracy, rank-k.

Scores are similarities: higher means more alike (cosine similarity, or the negative L2 distance; see
`pair_scores`). A pair is accepted as "same identity" when its score is >= the threshold. TAR (true accept
rate) is the fraction of same pairs accepted, FAR (false accept rate) the fraction of different pairs
accepted, FRR = 1 - TAR. Operating points exist only at distinct scores: tied pairs are accepted or
rejected together.

The ROC is scikit-learn's `roc_curve` (tests check AUC against `roc_auc_score`). The k-fold accuracy is
LFW's protocol (Huang et al., "Labeled Faces in the Wild", 2007): each fold is scored with the threshold
that maximises accuracy on the other folds.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from numpy.typing import ArrayLike
from sklearn.metrics import auc as _trapezoid_area
from sklearn.metrics import roc_curve

Metric = Literal["cosine", "l2"]


def _numpy(x: ArrayLike | torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _pairs(scores: ArrayLike, same: ArrayLike, *, both: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Validated (P,) float64 scores and (P,) bool labels; `both` requires same and different pairs."""
    s = _numpy(scores).astype(np.float64).reshape(-1)
    y = _numpy(same).reshape(-1)
    if len(s) != len(y):
        raise ValueError(f"{len(s)} scores for {len(y)} same/different labels")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("same must hold booleans (or 0 / 1)")
    if not np.isfinite(s).all():
        raise ValueError(f"{int((~np.isfinite(s)).sum())} of {len(s)} scores are NaN or infinite")
    y = y.astype(bool)
    if both and (y.all() or not y.any()):
        raise ValueError(f"verification metrics need both same and different pairs; got {int(y.sum())} same and "
                         f"{int((~y).sum())} different")
    return s, y


def roc(scores: ArrayLike, same: ArrayLike, *, drop_intermediate: bool = True
        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ROC curve, exactly `sklearn.metrics.roc_curve(same, scores)`.

    Returns:
        (far, tar, thresholds): non-decreasing FAR and TAR, decreasing thresholds, the first being +inf
        (accept nothing: the point (0, 0)). ``drop_intermediate=False`` keeps every distinct threshold.

    Shape:
        - scores, same: (P,).
        - far, tar, thresholds: (T,).
    """
    s, y = _pairs(scores, same)
    return roc_curve(y, s, drop_intermediate=drop_intermediate)


def auc(scores: ArrayLike, same: ArrayLike) -> float:
    """Area under the ROC (trapezoidal, ties counting one half), equal to `sklearn.metrics.roc_auc_score`."""
    far, tar, _ = roc(scores, same)
    return float(_trapezoid_area(far, tar))


def eer_from_roc(far: np.ndarray, tar: np.ndarray) -> float:
    """The equal error rate of a ROC curve: where FAR = FRR along its straight segments.

    g = FAR - FRR = FAR + TAR - 1 never decreases along the curve, from -1 at (0, 0) to 1 at (1, 1), so it
    crosses 0 once: on a ROC point (the EER is that point's FAR) or inside one segment, where FAR and FRR
    are interpolated linearly (the rate a random mix of the two thresholds achieves).
    """
    far, tar = np.asarray(far, np.float64), np.asarray(tar, np.float64)
    g = far + tar - 1.0
    i = int(np.searchsorted(g, 0.0, side="left"))   # first point with g >= 0
    if g[i] == 0.0 or i == 0:
        return float(far[i])
    t = -g[i - 1] / (g[i] - g[i - 1])
    return float(far[i - 1] + t * (far[i] - far[i - 1]))


def eer(scores: ArrayLike, same: ArrayLike) -> float:
    """Equal error rate, interpolated linearly between ROC points (see `eer_from_roc`)."""
    far, tar, _ = roc(scores, same)
    return eer_from_roc(far, tar)


def tar_at_far_from_roc(far: np.ndarray, tar: np.ndarray, target: float) -> float:
    """The highest TAR among the curve's points with FAR <= target (no interpolation); needs the full curve
    (``drop_intermediate=False``), since dropped collinear points can be the answer."""
    if not 0.0 <= target <= 1.0:
        raise ValueError(f"target FAR must be in [0, 1], got {target}")
    return float(np.asarray(tar)[np.asarray(far) <= target].max())   # (0, 0) is always on the curve


def tar_at_far(scores: ArrayLike, same: ArrayLike, far: float) -> float:
    """TAR at the lowest threshold whose FAR is <= `far`: the best rate achievable without exceeding it.

    A threshold, not an interpolation between two: the rate is one a deployed system reaches. When `far` is
    below 1 / (number of different pairs) only FAR = 0 qualifies, and the result is the TAR above the
    highest-scoring different pair.
    """
    far_curve, tar_curve, _ = roc(scores, same, drop_intermediate=False)
    return tar_at_far_from_roc(far_curve, tar_curve, far)


def best_threshold(scores: ArrayLike, same: ArrayLike) -> tuple[float, float]:
    """The threshold maximising accuracy on these pairs, and that accuracy.

    The threshold is placed midway between the lowest accepted and the highest rejected score (at the
    lowest score when all are accepted, just above the highest when none are). Equal accuracies go to the
    higher threshold (fewer false accepts).
    """
    s, y = _pairs(scores, same, both=False)
    if not len(s):
        raise ValueError("no pairs")
    values, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)     # (m,) ascending
    pos = np.bincount(inverse.reshape(-1), weights=y, minlength=len(values))
    # accepting values[j:] for j = 0..m (j = m: accept nothing)
    correct = np.r_[np.cumsum(pos[::-1])[::-1], 0.0] + np.r_[0.0, np.cumsum(counts - pos)]  # (m + 1,)
    j = len(values) - int(np.argmax(correct[::-1]))                                      # the last maximum
    if j == len(values):
        threshold = float(np.nextafter(values[-1], np.inf))
    elif j == 0:
        threshold = float(values[0])
    else:
        low, high = values[j - 1], values[j]
        middle = (low + high) / 2 if np.isfinite(low + high) else low / 2 + high / 2
        threshold = float(middle if low < middle <= high else high)
    return threshold, float(correct[j] / len(s))


@dataclass(frozen=True, eq=False)  # arrays inside: compare fields explicitly
class KFoldResult:
    """LFW-protocol accuracy. `std` is the population standard deviation over folds (as FaceNet's and
    InsightFace's LFW evaluations report it); LFW's standard error is ``std(ddof=1) / sqrt(k)``.

    Shape:
        - accuracies, thresholds, folds: (k,), in increasing fold order.
    """

    mean: float
    std: float
    accuracies: np.ndarray
    thresholds: np.ndarray
    folds: np.ndarray


def kfold_accuracy(scores: ArrayLike, same: ArrayLike, folds: ArrayLike) -> KFoldResult:
    """Accuracy of each fold at the threshold chosen (by `best_threshold`) on all the other folds.

    Shape:
        - scores, same, folds: (P,); folds are integer fold ids, at least two distinct.
    """
    s, y = _pairs(scores, same)
    f = _numpy(folds).reshape(-1)
    if len(f) != len(s):
        raise ValueError(f"{len(f)} folds for {len(s)} pairs")
    ids = np.unique(f)
    if len(ids) < 2:
        raise ValueError(f"k-fold accuracy needs at least 2 folds, got {len(ids)}")
    thresholds = np.empty(len(ids))     # (k,)
    accuracies = np.empty(len(ids))     # (k,)
    for i, k in enumerate(ids):
        held_out = f == k
        thresholds[i] = best_threshold(s[~held_out], y[~held_out])[0]
        accuracies[i] = np.mean((s[held_out] >= thresholds[i]) == y[held_out])
    return KFoldResult(float(accuracies.mean()), float(accuracies.std()), accuracies, thresholds, ids)


def _embeddings(x: ArrayLike | torch.Tensor, name: str) -> np.ndarray:
    e = _numpy(x).astype(np.float64)
    if e.ndim != 2 or not np.isfinite(e).all():
        raise ValueError(f"{name} must be a finite (N, D) array, got shape {e.shape}")
    return e


def similarity(x: np.ndarray, y: np.ndarray, metric: Metric) -> np.ndarray:
    """All-pairs similarity: cosine (zero vectors score 0), or the negative squared L2 distance.

    Shape:
        - x: (N, D), y: (M, D); output (N, M) float64.
    """
    if metric == "cosine":
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-300)
        y = y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-300)
        return x @ y.T
    if metric == "l2":
        return 2 * (x @ y.T) - (x * x).sum(1)[:, None] - (y * y).sum(1)[None, :]
    raise ValueError(f"metric must be 'cosine' or 'l2', got {metric!r}")


def pair_scores(a: ArrayLike | torch.Tensor, b: ArrayLike | torch.Tensor, metric: Metric = "cosine") -> np.ndarray:
    """Score of each pair (a[i], b[i]): cosine similarity, or the negative L2 distance.

    Shape:
        - a, b: (P, D); output (P,) float64.
    """
    x, y = _embeddings(a, "a"), _embeddings(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"a and b must have the same shape, got {x.shape} and {y.shape}")
    if metric == "l2":
        return -np.linalg.norm(x - y, axis=1)
    return np.einsum("pd,pd->p", *(e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-300) for e in (x, y)))


def identification_accuracy(gallery_emb: ArrayLike | torch.Tensor, gallery_labels: ArrayLike,
                            probe_emb: ArrayLike | torch.Tensor, probe_labels: ArrayLike, *,
                            ks: Sequence[int] = (1, 5), metric: Metric = "cosine", chunk: int = 1024
                            ) -> dict[str, float]:
    """Closed-set rank-k identification: the fraction of probes whose identity is among the k best.

    Identities are ranked by their best-matching gallery image, so a gallery may hold several images per
    identity and rank-5 means five distinct identities. Ties count against the probe (its rank is the
    number of identities scoring at least as well as its own), so degenerate embeddings score 0, not 1.

    Returns:
        ``{"rank{k}": accuracy}`` for each k not above the number of gallery identities (rank-K is 1).

    Shape:
        - gallery_emb: (G, D), gallery_labels: (G,); probe_emb: (P, D), probe_labels: (P,).
    """
    gallery, probe = _embeddings(gallery_emb, "gallery_emb"), _embeddings(probe_emb, "probe_emb")
    g_labels, p_labels = _numpy(gallery_labels).reshape(-1), _numpy(probe_labels).reshape(-1)
    if len(g_labels) != len(gallery) or len(p_labels) != len(probe) or gallery.shape[1] != probe.shape[1]:
        raise ValueError(f"shapes disagree: gallery {gallery.shape} with {len(g_labels)} labels, probes "
                         f"{probe.shape} with {len(p_labels)} labels")
    if not len(gallery) or not len(probe):
        raise ValueError("identification needs a non-empty gallery and probe set")
    if any(not isinstance(k, (int, np.integer)) or k < 1 for k in ks):
        raise ValueError(f"ks must be positive integers, got {ks!r}")
    identities, g_code = np.unique(g_labels, return_inverse=True)
    unknown = ~np.isin(p_labels, identities)
    if unknown.any():
        raise ValueError(f"{int(unknown.sum())} probe(s) have identities absent from the gallery (first: "
                         f"{p_labels[unknown][0]!r}); rank-k identification is closed-set")
    p_code = np.searchsorted(identities, p_labels)
    order = np.argsort(g_code.reshape(-1), kind="stable")
    starts = np.r_[0, np.cumsum(np.bincount(g_code.reshape(-1)))[:-1]]   # (K,) first column of each identity
    rank = np.empty(len(probe), dtype=np.int64)                           # (P,) 1 = best
    for lo in range(0, len(probe), chunk):
        per_identity = np.maximum.reduceat(similarity(probe[lo:lo + chunk], gallery[order], metric), starts, axis=1)
        own = per_identity[np.arange(len(per_identity)), p_code[lo:lo + chunk]]
        rank[lo:lo + chunk] = (per_identity >= own[:, None]).sum(1)
    return {f"rank{k}": float(np.mean(rank <= k)) for k in sorted(set(ks)) if k <= len(identities)}


def far_key(far: float) -> str:
    """The metric key of a TAR at `far`: ``tar@far=1e-2`` for 0.01."""
    mantissa, exponent = f"{far:.0e}".split("e")
    short = f"{mantissa}e{int(exponent)}"
    return f"tar@far={short if float(short) == far else repr(far)}"


class VerificationMetric:
    """Verification metrics over scored pairs, accumulated batch by batch.

    `compute` gives ``auc``, ``eer``, ``tar@far=1e-2`` and ``tar@far=1e-3`` (one per entry of `fars`),
    ``best_acc`` and ``best_acc_std`` (LFW's k-fold protocol, see `kfold_accuracy`) and ``threshold`` (the
    threshold maximising accuracy over all pairs: the one to deploy).

    Pairs given without folds are dealt into `num_folds` folds by arrival order, separately for same and
    different pairs (the i-th same pair goes to fold i mod k), so every fold has both kinds; either every
    update gives folds or none does.

    Args:
        fars: the FARs at which TAR is reported.
        num_folds: folds for pairs given without folds.
    """

    def __init__(self, *, fars: Sequence[float] = (1e-2, 1e-3), num_folds: int = 10) -> None:
        if num_folds < 2:
            raise ValueError(f"num_folds must be >= 2, got {num_folds}")
        for far in fars:
            if not 0.0 < far < 1.0:
                raise ValueError(f"fars must lie in (0, 1), got {far}")
        self.fars = tuple(float(f) for f in fars)
        self.num_folds = num_folds
        self.reset()

    def reset(self) -> None:
        """Forget every pair seen so far."""
        self._scores: list[np.ndarray] = []
        self._same: list[np.ndarray] = []
        self._folds: list[np.ndarray] = []

    def update(self, scores: ArrayLike | torch.Tensor, same: ArrayLike | torch.Tensor,
               fold: ArrayLike | torch.Tensor | None = None) -> None:
        """Add a batch of scored pairs.

        Shape:
            - scores, same, fold: (B,).
        """
        s, y = _pairs(scores, same, both=False)
        if self._scores and (fold is None) != (not self._folds):
            raise ValueError("give folds with every update or with none")
        if fold is not None:
            f = _numpy(fold).reshape(-1)
            if len(f) != len(s) or (len(f) and (f.dtype.kind not in "iu" or f.min() < 0)):
                raise ValueError(f"fold must be {len(s)} non-negative integers")
            self._folds.append(f.astype(np.int64))
        self._scores.append(s)
        self._same.append(y)

    @property
    def count(self) -> int:
        return sum(len(s) for s in self._scores)

    def pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(scores, same, fold) of every pair so far, folds dealt as described above when none were given.

        Shape:
            - each (P,).
        """
        s = np.concatenate(self._scores) if self._scores else np.empty(0)
        y = np.concatenate(self._same) if self._same else np.empty(0, bool)
        if self._folds:
            return s, y, np.concatenate(self._folds)
        fold = np.empty(len(y), dtype=np.int64)
        for kind in (True, False):
            fold[y == kind] = np.arange(int((y == kind).sum())) % self.num_folds
        return s, y, fold

    def roc(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The full ROC (every distinct threshold), for `ninshiki.viz.roc.save_roc`."""
        s, y, _ = self.pairs()
        return roc(s, y, drop_intermediate=False)

    def compute(self) -> dict[str, float]:
        """The metrics of every pair so far; raises ValueError without both same and different pairs."""
        s, y, fold = self.pairs()
        far, tar, _ = roc(s, y, drop_intermediate=False)
        kfold = kfold_accuracy(s, y, fold)
        out = {"auc": float(_trapezoid_area(far, tar)), "eer": eer_from_roc(far, tar)}
        out.update({far_key(f): tar_at_far_from_roc(far, tar, f) for f in self.fars})
        out.update(best_acc=kfold.mean, best_acc_std=kfold.std, threshold=best_threshold(s, y)[0])
        return out
