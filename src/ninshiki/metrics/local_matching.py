"""Local-feature matching metrics on image pairs related by a known homography H (a's pixels -> b's).

- Repeatability (Mikolajczyk and Schmid, "A performance evaluation of local descriptors", PAMI 2005, and
  Mikolajczyk et al., "A comparison of affine region detectors", IJCV 2005, for points as in Schmid et al.,
  IJCV 2000): only keypoints in the part of the scene both images see count; a's keypoints are mapped into
  b, paired one-to-one with b's keypoints within `threshold` pixels (closest pairs first), and the number
  of pairs is divided by the smaller of the two keypoint counts.
- Matching precision (HPatches, Balntas et al., CVPR 2017; "mean matching accuracy", MMA, of D2-Net,
  Dusmanu et al., CVPR 2019): a match is correct when H maps its point in a within `threshold` pixels of
  its point in b. MMA at a threshold is the mean over pairs of each pair's fraction of correct matches;
  a pair without matches scores 0 (it found nothing right). `matching_precision` in `MatchingMetric` pools
  all matches of all pairs at 3 px instead, so that pairs with many matches weigh more.
- Homography accuracy (DeTone et al., "SuperPoint", CVPRW 2018, on HPatches): the four corner pixels of a
  are mapped by the estimated and the true H; the estimate is correct when their mean distance is below
  `threshold` pixels. A failed estimate (None) is wrong.

Points follow `ninshiki.match.features`: the centre of the top-left pixel is (0, 0).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.spatial import cKDTree

from ninshiki.match.geometry import project, reprojection_errors

MMA_THRESHOLDS = (1, 3, 5)
HOMOGRAPHY_THRESHOLDS = (3, 5)


def inside(xy: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Which points lie on the image (within its outer pixel borders; nan and inf do not).

    Shape:
        - xy: (N, 2); shape: (height, width). Output: (N,) bool.
    """
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    height, width = shape[:2]
    with np.errstate(invalid="ignore"):
        return ((xy[:, 0] >= -0.5) & (xy[:, 0] <= width - 0.5) & (xy[:, 1] >= -0.5) & (xy[:, 1] <= height - 0.5))


def repeatability(kp_a: np.ndarray, kp_b: np.ndarray, H: np.ndarray, shape_b: tuple[int, int], *,
                  shape_a: tuple[int, int] | None = None, threshold: float = 3.0) -> float:
    """Fraction of keypoints detected again in the other image, in the region both images see.

    Args:
        kp_a, kp_b: keypoint positions in a and in b.
        H: maps a's pixels to b's.
        shape_b: (height, width) of b: a's keypoints mapped outside it are not counted.
        shape_a: (height, width) of a: b's keypoints mapped back outside it are not counted; None counts them
            all (b is taken to be entirely seen by a).
        threshold: largest distance in b's pixels between a mapped a keypoint and its b keypoint.

    Returns:
        One-to-one pairs within `threshold` / min(visible a keypoints, visible b keypoints); 0 when either
        image has no visible keypoint.

    Shape:
        - kp_a: (Na, 2), kp_b: (Nb, 2); H: (3, 3).
    """
    mapped = project(H, kp_a)                                                        # (Na, 2) in b
    mapped = mapped[inside(mapped, shape_b)]
    kp_b = np.asarray(kp_b, np.float64).reshape(-1, 2)
    if shape_a is not None:
        kp_b = kp_b[inside(project(np.linalg.inv(H), kp_b), shape_a)]
    if len(mapped) == 0 or len(kp_b) == 0:
        return 0.0
    return len(one_to_one_pairs(mapped, kp_b, threshold)) / min(len(mapped), len(kp_b))


def one_to_one_pairs(a: np.ndarray, b: np.ndarray, threshold: float) -> np.ndarray:
    """Pair points of `a` with points of `b` closer than `threshold`, each point at most once, closest first.

    Shape:
        - a: (Na, 2), b: (Nb, 2). Output: (P, 2) int64 indices (into a, into b), in the order chosen.
    """
    close = cKDTree(b).sparse_distance_matrix(cKDTree(a), threshold, output_type="ndarray")   # (K,) records
    close = close[close["v"] < threshold]                          # strictly closer (the tree keeps equal ones)
    order = np.lexsort((close["i"], close["j"], close["v"]))       # by distance; ties by index in a, then b
    taken_a, taken_b = np.zeros(len(a), bool), np.zeros(len(b), bool)
    pairs = []
    for i, j in zip(close["i"][order].tolist(), close["j"][order].tolist()):   # i indexes b, j indexes a
        if not taken_a[j] and not taken_b[i]:
            taken_a[j] = taken_b[i] = True
            pairs.append((j, i))
    return np.array(pairs, np.int64).reshape(-1, 2)


def matching_precision(xy_a: np.ndarray, xy_b: np.ndarray, H: np.ndarray, *, threshold: float = 3.0) -> float:
    """Fraction of matches (xy_a[i] <-> xy_b[i]) whose reprojection error ||H(xy_a) - xy_b|| < `threshold`;
    0 when there are no matches.

    Shape:
        - xy_a, xy_b: (M, 2); H: (3, 3).
    """
    errors = reprojection_errors(H, xy_a, xy_b)                                      # (M,)
    return float(np.mean(errors < threshold)) if len(errors) else 0.0


def mean_matching_accuracy(pairs_results: Sequence[np.ndarray],
                           thresholds: Sequence[float] = MMA_THRESHOLDS) -> dict[float, float]:
    """MMA: the mean over pairs of each pair's fraction of matches within each threshold.

    Args:
        pairs_results: per pair, the reprojection errors of its matches (`geometry.reprojection_errors`).
        thresholds: in pixels.

    Returns:
        threshold -> MMA in [0, 1] (nan when there are no pairs).

    Shape:
        - pairs_results: a sequence of (M_i,) arrays; M_i may be 0 (the pair scores 0).
    """
    result = {}
    for threshold in thresholds:
        scores = [float(np.mean(np.asarray(e) < threshold)) if len(e) else 0.0 for e in pairs_results]
        result[threshold] = float(np.mean(scores)) if scores else float("nan")
    return result


def corner_error(H_est: np.ndarray | None, H_true: np.ndarray, shape: tuple[int, int]) -> float:
    """Mean distance between a's corner pixels mapped by the estimated and by the true homography (inf when
    the estimate is missing or maps a corner to infinity).

    Shape:
        - H_est, H_true: (3, 3); shape: (height, width) of image a.
    """
    if H_est is None:
        return float("inf")
    height, width = shape[:2]
    corners = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], np.float64)  # (4, 2)
    distances = np.linalg.norm(project(H_est, corners) - project(H_true, corners), axis=1)              # (4,)
    mean = float(np.mean(distances))
    return mean if np.isfinite(mean) else float("inf")


def homography_accuracy(H_est: np.ndarray | None, H_true: np.ndarray, shape: tuple[int, int], *,
                        threshold: float = 3.0) -> bool:
    """Whether the estimated homography is correct: `corner_error` below `threshold` pixels (SuperPoint)."""
    return corner_error(H_est, H_true, shape) < threshold


class MatchingMetric:
    """Accumulates matching results pair by pair; `compute` gives the means over the pairs so far.

    Keys of `compute`: ``matching_precision`` (correct / all matches at `threshold` px, pooled over pairs),
    ``repeatability`` (mean over pairs, at `threshold` px), ``mma@1``, ``mma@3``, ``mma@5``,
    ``homography_acc@3``, ``homography_acc@5`` (fraction of pairs), ``mean_matches`` (per pair) and
    ``seconds_per_pair`` (mean of the times given). With no pairs every value is nan.

    Args:
        threshold: the pixel threshold of ``matching_precision`` and ``repeatability``.
    """

    def __init__(self, *, threshold: float = 3.0) -> None:
        self.threshold = threshold
        self.reset()

    def reset(self) -> None:
        self.rows: list[dict[str, float | int | str]] = []   # one per pair, for a per-pair table
        self._errors: list[np.ndarray] = []

    def update(self, *, keypoints_a: np.ndarray, keypoints_b: np.ndarray, matches_a: np.ndarray,
               matches_b: np.ndarray, H: np.ndarray, shape_a: tuple[int, int], shape_b: tuple[int, int],
               H_est: np.ndarray | None, seconds: float = float("nan"), name: str = "") -> dict[str, float | int | str]:
        """Add one pair; returns its row of per-pair values.

        Args:
            keypoints_a, keypoints_b: every keypoint detected in a and in b.
            matches_a, matches_b: the matched points, row i of one matched to row i of the other.
            H: the true homography (a -> b); H_est: the one estimated from the matches, or None.
            shape_a, shape_b: (height, width) of a and b.
            seconds: time spent on the pair (detection, description, matching, estimation).

        Shape:
            - keypoints_a: (Na, 2), keypoints_b: (Nb, 2), matches_a and matches_b: (M, 2).
        """
        errors = reprojection_errors(H, matches_a, matches_b)                         # (M,)
        self._errors.append(errors)
        row: dict[str, float | int | str] = {
            "name": name or str(len(self.rows)), "keypoints_a": len(keypoints_a), "keypoints_b": len(keypoints_b),
            "matches": len(errors), "correct": int(np.sum(errors < self.threshold)),
            "repeatability": repeatability(keypoints_a, keypoints_b, H, shape_b, shape_a=shape_a,
                                           threshold=self.threshold)}
        for threshold in MMA_THRESHOLDS:
            row[f"precision@{threshold}"] = float(np.mean(errors < threshold)) if len(errors) else 0.0
        row["corner_error"] = corner_error(H_est, H, shape_a)
        for threshold in HOMOGRAPHY_THRESHOLDS:
            row[f"homography_ok@{threshold}"] = int(row["corner_error"] < threshold)
        row["seconds"] = float(seconds)
        self.rows.append(row)
        return row

    def compute(self) -> dict[str, float]:
        keys = ["matching_precision", "repeatability", *(f"mma@{t}" for t in MMA_THRESHOLDS),
                *(f"homography_acc@{t}" for t in HOMOGRAPHY_THRESHOLDS), "mean_matches", "seconds_per_pair"]
        if not self.rows:
            return dict.fromkeys(keys, float("nan"))
        matches = sum(int(r["matches"]) for r in self.rows)
        result = {"matching_precision": sum(int(r["correct"]) for r in self.rows) / matches if matches else 0.0,
                  "repeatability": float(np.mean([r["repeatability"] for r in self.rows]))}
        result.update({f"mma@{t}": v for t, v in mean_matching_accuracy(self._errors, MMA_THRESHOLDS).items()})
        for threshold in HOMOGRAPHY_THRESHOLDS:
            result[f"homography_acc@{threshold}"] = float(np.mean([r[f"homography_ok@{threshold}"] for r in self.rows]))
        result["mean_matches"] = matches / len(self.rows)
        result["seconds_per_pair"] = float(np.mean([r["seconds"] for r in self.rows]))
        return {key: float(result[key]) for key in keys}
