"""Discrete AdaBoost over decision stumps, as in Viola and Jones, "Rapid Object Detection using a Boosted Cascade
of Simple Features", CVPR 2001 (Table 1), and the boosted stages of their attentional cascade.

Each round picks, over all features, the stump (feature, threshold, polarity) of least weighted error. The values
are sorted once per stage; a round then needs one gather of the signed weights in sorted order and one cumulative
sum per feature (the paper's T+, T-, S+, S- scan): with D_i the positive minus negative weight of the first i+1
sorted samples, a split after sample i errs by T+ - D_i when positives go left (value < threshold) and by
T- + D_i when they go right. Only splits between distinct values are thresholds.

The paper's classifier h in {0, 1} with alpha = log(1 / beta), beta = eps / (1 - eps), accepts when
sum alpha h >= sum alpha / 2. Written as OpenCV stumps it is the same classifier with leaves +-alpha / 2 and the
stage threshold at 0: `left` is added when value < threshold, `right` otherwise. The stage threshold is then
lowered until `min_hit_rate` of the positives pass (Viola and Jones, section 4). Leaves, stump and stage
thresholds are float32 (what OpenCV's XML holds), stage sums run in float64 in stump order, as
`predictOrderedStump` does, and are compared with the stage threshold minus OpenCV's THRESHOLD_EPS (1e-5, which
it subtracts on loading), so the classifier trained here is the one OpenCV runs, window for window.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from ninshiki.classical.haar.cascade import HaarCascade
from ninshiki.classical.haar.features import batch_integrals, compile_features, variance_norm, window_values

_THRESHOLD_EPS = np.float32(1e-5)   # OpenCV's, subtracted from stage thresholds on loading


@dataclass
class WeakStump:
    feature: int        # column of the training values
    threshold: float    # float32; left when value < threshold
    left: float         # float32 leaf values
    right: float
    error: float        # weighted training error when chosen


@dataclass
class BoostedStage:
    stumps: list[WeakStump]
    threshold: float    # float32; the stage passes when its sum >= passing_threshold(threshold)
    hit_rate: float     # on the stage's training positives
    false_alarm: float  # on the stage's training negatives


class SortedValues:
    """Feature values sorted once per stage.

    Args:
        values: Feature values; column-major storage (a feature's values contiguous) avoids a transposing copy.
        prefix_order: Optional order, per feature, of the first P samples (the positives, which every stage
            shares): argsort then meets a long sorted run and is ~2-3x faster.

    Shape:
        values: (N, F) float32; prefix_order: (F, P) int -> order: (F, N) intp sample indices in increasing
        value (native integers: np.take is ~2x faster with them); valid: (F, N - 1) bool, true where a
        threshold fits between sorted samples i and i + 1 (their values differ).
    """

    def __init__(self, values: np.ndarray, *, prefix_order: np.ndarray | None = None, chunk: int = 1024) -> None:
        n, f = values.shape
        prefix = 0 if prefix_order is None else prefix_order.shape[1]
        self.values = values
        self.order = np.empty((f, n), np.intp)
        self.valid = np.empty((f, max(n - 1, 0)), bool)
        tail = np.arange(prefix, n)
        for start in range(0, f, chunk):
            rows = np.array(values[:, start:start + chunk].T, order="C")                    # (chunk, N) copy
            if prefix:
                head = prefix_order[start:start + chunk]                                   # (chunk, P)
                rows[:, :prefix] = np.take_along_axis(rows[:, :prefix], head, axis=1)
            order = np.argsort(rows, axis=1)
            ranked = np.take_along_axis(rows, order, axis=1)
            self.valid[start:start + chunk] = ranked[:, 1:] > ranked[:, :-1]
            if prefix:                                  # positions in `rows` -> sample indices
                lookup = np.concatenate([head, np.broadcast_to(tail, (len(head), n - prefix))], 1)
                order = np.take_along_axis(lookup, order, axis=1)
            self.order[start:start + chunk] = order


def _split_threshold(low: np.float32, high: np.float32) -> float:
    """A float32 threshold t with low < t <= high: the midpoint, or `high` when they are adjacent floats."""
    mid = np.float32((np.float64(low) + np.float64(high)) / 2)
    return float(mid if mid > low else high)


def _lower_bounds(data: SortedValues, signed32: np.ndarray, rows: slice, totals: tuple[float, float]) -> np.ndarray:
    """Per feature, the least error over ALL splits, tie-breaking ones included: a lower bound of its stump's
    error, up to float32 rounding. Unmasked extremes are ~3x cheaper than masked ones; torch does the row-wise
    cumulative sums (numpy's are ~5x slower along rows). Shape: -> (R,) float64."""
    cum = torch.cumsum(torch.from_numpy(np.take(signed32, data.order[rows])), 1)[:, :-1]    # (R, N - 1)
    return np.minimum(totals[0] - cum.amax(1).double().numpy(), totals[1] + cum.amin(1).double().numpy())


def _exact_errors(data: SortedValues, signed: np.ndarray, rows: np.ndarray, totals: tuple[float, float]) -> np.ndarray:
    """Float64 errors over valid splits only, positives left and right. Shape: rows (R,) -> (R, 2)."""
    cum = np.cumsum(np.take(signed, data.order[rows]), axis=1)[:, :-1]                      # (R, N - 1)
    valid = data.valid[rows]
    high = np.max(cum, axis=1, where=valid, initial=-math.inf)
    low = np.min(cum, axis=1, where=valid, initial=math.inf)
    return np.stack([totals[0] - high, totals[1] + low], 1)


def best_stump(data: SortedValues, signed: np.ndarray, *, chunk: int = 1024) -> tuple[int, float, bool, float]:
    """The stump of least weighted error over all features.

    A float32 scan gives every feature a lower bound of its error; features are then scored exactly (float64,
    valid splits only) in increasing bound until no remaining bound can beat the best, so the choice is exact.

    Args:
        data: Sorted feature values.
        signed: (N,) float64 sample weights, positive for positives and negative for negatives (absolute sum 1).

    Returns:
        (feature, threshold, positives_left, error); ties go to the lowest feature, then positives-left, then the
        first split. Error is inf when no feature has two distinct values.
    """
    totals = float(signed[signed > 0].sum()), float(-signed[signed < 0].sum())
    num_features, n = data.order.shape
    signed32 = signed.astype(np.float32)
    bounds = np.concatenate([_lower_bounds(data, signed32, slice(start, start + chunk), totals)
                             for start in range(0, num_features, chunk)])                   # (F,)
    slack = 2 * (n + 1) * 2.0 ** -24           # float32 partial sums err by at most (n + 1) * 2^-24 each
    ranking, done, scored, best, batch = np.argsort(bounds, kind="stable"), 0, [], math.inf, 64
    while done < num_features and bounds[ranking[done]] - slack <= best:
        rows = ranking[done:done + batch]
        scored.append((rows, _exact_errors(data, signed, rows, totals)))
        best = min(best, float(scored[-1][1].min()))
        done, batch = done + batch, batch * 2
    if not math.isfinite(best):
        return -1, 0.0, True, math.inf
    rows = np.concatenate([r for r, _ in scored])
    errors = np.concatenate([e for _, e in scored])[np.argsort(rows)]                       # (R, 2) by feature
    pick = int(np.argmin(errors.ravel()))                                                  # row-major: ties rule
    feature, left = int(np.sort(rows)[pick // 2]), pick % 2 == 0
    cum = np.cumsum(signed[data.order[feature]])[:-1]
    i = int(np.argmax(np.where(data.valid[feature], cum if left else -cum, -math.inf)))
    ranked = data.values[data.order[feature], feature]
    return feature, _split_threshold(ranked[i], ranked[i + 1]), left, float(errors.ravel()[pick])


class DiscreteAdaBoost:
    """The paper's boosting loop: initial weights 1/(2m) and 1/(2l), normalised each round, correct samples
    multiplied by beta.

    Shape:
        values: (N, F) float32 feature values; labels: (N,) bool (True = object).
    """

    def __init__(self, values: np.ndarray, labels: np.ndarray, *, prefix_order: np.ndarray | None = None,
                 chunk: int = 1024) -> None:
        self.values, self.labels = values, np.asarray(labels, bool)
        num_pos, num_neg = int(self.labels.sum()), int((~self.labels).sum())
        if num_pos == 0 or num_neg == 0 or values.shape[0] != len(self.labels):
            raise ValueError(f"DiscreteAdaBoost: need positives and negatives and one label per row, got {num_pos} "
                             f"positives, {num_neg} negatives for {values.shape[0]} rows")
        self.data = SortedValues(values, prefix_order=prefix_order, chunk=chunk)
        self.weights = np.where(self.labels, 0.5 / num_pos, 0.5 / num_neg)                  # (N,) float64
        self.chunk = chunk

    def outputs(self, stump: WeakStump) -> np.ndarray:
        """(N,) float64 leaf value of `stump` on each training sample."""
        below = self.values[:, stump.feature] < np.float32(stump.threshold)
        return np.where(below, np.float64(stump.left), np.float64(stump.right))

    def step(self) -> WeakStump | None:
        """Add one stump and reweight; None when no stump beats chance (error >= 1/2)."""
        self.weights /= self.weights.sum()
        signed = np.where(self.labels, self.weights, -self.weights)
        feature, threshold, positives_left, error = best_stump(self.data, signed, chunk=self.chunk)
        if not error < 0.5:
            return None
        stump = WeakStump(feature, threshold, 1.0, -1.0, error) if positives_left else \
            WeakStump(feature, threshold, -1.0, 1.0, error)
        correct = (self.outputs(stump) > 0) == self.labels
        error = max(float(self.weights[~correct].sum()), 1e-10)      # a perfect stump still gets a finite alpha
        beta = error / (1.0 - error)
        half_alpha = float(np.float32(0.5 * math.log(1.0 / beta)))
        stump.left, stump.right, stump.error = stump.left * half_alpha, stump.right * half_alpha, error
        self.weights[correct] *= beta
        return stump


def passing_threshold(threshold: float) -> float:
    """The threshold a stage sum is really compared with: OpenCV subtracts THRESHOLD_EPS = 1e-5 (in float32) from
    every stage threshold it loads (`CascadeClassifierImpl::Data::read`), so a stage passes when
    sum >= float32(threshold) - 1e-5."""
    return float(np.float32(threshold) - _THRESHOLD_EPS)


def hit_threshold(scores: np.ndarray, min_hit_rate: float) -> float:
    """The largest float32 threshold that at least `min_hit_rate` of `scores` (positives' sums) reach."""
    allowed = math.floor((1.0 - min_hit_rate) * len(scores) + 1e-9)                      # positives that may fail
    kth = np.sort(scores)[min(allowed, len(scores) - 1)]
    threshold = np.float32(kth)
    return float(threshold if threshold <= kth else np.nextafter(threshold, np.float32(-np.inf)))


def boost_stage(values: np.ndarray, labels: np.ndarray, *, min_hit_rate: float, max_false_alarm: float,
                max_weak: int, prefix_order: np.ndarray | None = None, progress: bool = False,
                desc: str = "stage") -> BoostedStage:
    """Add stumps until `min_hit_rate` of the positives pass with at most `max_false_alarm` of the negatives.

    Shape:
        values: (N, F) float32; labels: (N,) bool; prefix_order: see `SortedValues`.
    """
    booster = DiscreteAdaBoost(values, labels, prefix_order=prefix_order)
    positives = booster.labels
    scores = np.zeros(len(positives))                                                     # (N,) float64
    stage = BoostedStage([], 0.0, 1.0, 1.0)
    with tqdm(total=max_weak, desc=desc, unit="stump", leave=False, disable=not progress) as bar:
        while len(stage.stumps) < max_weak and (not stage.stumps or stage.false_alarm > max_false_alarm):
            stump = booster.step()
            if stump is None:
                break
            stage.stumps.append(stump)
            scores += booster.outputs(stump)
            stage.threshold = hit_threshold(scores[positives], min_hit_rate)
            passing = passing_threshold(stage.threshold)
            stage.hit_rate = float(np.mean(scores[positives] >= passing))
            stage.false_alarm = float(np.mean(scores[~positives] >= passing))
            bar.update()
            bar.set_postfix(hit=f"{stage.hit_rate:.4f}", fa=f"{stage.false_alarm:.4f}")
    return stage


class CascadeEvaluator:
    """A `HaarCascade` ready to run on windows of flat integral images with the detector's arithmetic: windows
    OpenCV skips (inner standard deviation <= 10) are rejected, then stage by stage only survivors are evaluated.
    """

    def __init__(self, cascade: HaarCascade) -> None:
        self.window = cascade.window
        self.stages = []
        for stage in cascade.stages:
            table = compile_features([cascade.features[s.feature] for s in stage.stumps], cascade.window)
            thresholds = np.array([s.threshold for s in stage.stumps], np.float32)        # (T,)
            left = np.array([s.left for s in stage.stumps], np.float32).astype(np.float64)
            right = np.array([s.right for s in stage.stumps], np.float32).astype(np.float64)
            self.stages.append((table, thresholds, left, right, passing_threshold(stage.threshold)))

    def accepts(self, ii: np.ndarray, sq: np.ndarray, offsets: np.ndarray, strides: np.ndarray | int) -> np.ndarray:
        """Whether each window passes every stage.

        Shape:
            ii, sq: flat integer integral images (several may be concatenated); offsets, strides: (n,) each
            window's top-left corner and its image's row stride -> (n,) bool.
        """
        offsets = np.asarray(offsets, np.int64)
        strides = np.broadcast_to(np.asarray(strides, np.int64), offsets.shape)
        vnf, ok = variance_norm(ii, sq, offsets, strides, self.window)
        alive = np.flatnonzero(ok)
        for table, thresholds, left, right, stage_threshold in self.stages:
            values = window_values(ii, offsets[alive], strides[alive], table, vnf[alive])  # (n_alive, T)
            total = np.zeros(len(alive))
            for t in range(len(thresholds)):                      # stump order, as OpenCV accumulates
                total += np.where(values[:, t] < thresholds[t], left[t], right[t])
            alive = alive[total >= stage_threshold]
        accepted = np.zeros(len(offsets), bool)
        accepted[alive] = True
        return accepted

    def accepts_patches(self, patches: np.ndarray) -> np.ndarray:
        """(N, h, w) uint8 window-sized patches -> (N,) bool."""
        ii, sq = batch_integrals(patches)
        n, h1, w1 = ii.shape
        if (w1 - 1, h1 - 1) != tuple(self.window):
            raise ValueError(f"CascadeEvaluator: patches are {w1 - 1}x{h1 - 1}, the window is {self.window}")
        return self.accepts(ii.ravel(), sq.ravel(), np.arange(n) * h1 * w1, w1)


def cascade_accepts(cascade: HaarCascade, patches: np.ndarray) -> np.ndarray:
    """Whether `cascade` accepts each window-sized (N, h, w) uint8 patch, exactly as OpenCV would; (N,) bool."""
    return CascadeEvaluator(cascade).accepts_patches(patches)
