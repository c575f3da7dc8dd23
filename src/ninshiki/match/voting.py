"""Hough voting for object poses: Lowe, "Distinctive Image Features from Scale-Invariant Keypoints"
(IJCV 2004), section 7.3.

A match between a reference keypoint and a scene keypoint predicts a similarity transform of the whole
reference: the scale ratio of the keypoints, the difference of their orientations and, from those, where the
reference's centre lands in the scene. Matches of one object instance agree on that pose, wrong matches
scatter, so each match votes in a coarse 4-D histogram (orientation, log scale, x, y) and only bins with
at least 3 votes go on to geometric verification. As in the paper the bins are broad (30 degrees, a factor
of 2 in scale, a quarter of the reference's largest side times the predicted scale in position), since
affine and perspective changes bend the similarity, and each match votes for the 2 nearest bins in every
dimension (16 votes), so that a pose near a bin boundary still gathers all of its matches in one bin.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PoseCluster:
    """One histogram bin with enough votes: matches that agree on one pose of one reference.

    Attributes:
        reference: index of the reference (object model) the matches belong to.
        matches: (K,) int64 indices of the voting matches (into the arrays given to `hough_clusters`), sorted.
        pose: (4,) float64 the bin's centre: x, y of the reference's centre in the scene, scale ratio
            (scene / reference) and rotation in degrees.
    """

    reference: int
    matches: np.ndarray
    pose: np.ndarray

    @property
    def votes(self) -> int:
        return len(self.matches)


def predict_poses(ref_xy: np.ndarray, ref_scale: np.ndarray, ref_angle: np.ndarray, scene_xy: np.ndarray,
                  scene_scale: np.ndarray, scene_angle: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """The similarity pose each match predicts for its reference.

    Args:
        ref_xy, ref_scale, ref_angle: the matched reference keypoints (angles in degrees).
        scene_xy, scene_scale, scene_angle: the matched scene keypoints.
        centres: the centre of each match's reference image, in reference pixels.

    Returns:
        Per match: x, y (where the reference centre lands in the scene), log2 of the scale ratio, and the
        rotation in degrees in [0, 360).

    Shape:
        - ref_xy, scene_xy, centres: (M, 2); the others (M,).
        - Output: (M, 4) float64.
    """
    scale = np.asarray(scene_scale, np.float64) / np.asarray(ref_scale, np.float64)       # (M,)
    theta = np.mod(np.asarray(scene_angle, np.float64) - np.asarray(ref_angle, np.float64), 360.0)   # (M,)
    radians = np.deg2rad(theta)
    cos, sin = np.cos(radians), np.sin(radians)
    offset = np.asarray(centres, np.float64) - np.asarray(ref_xy, np.float64)            # (M, 2)
    moved = np.stack([cos * offset[:, 0] - sin * offset[:, 1], sin * offset[:, 0] + cos * offset[:, 1]], axis=1)
    position = np.asarray(scene_xy, np.float64) + scale[:, None] * moved                 # (M, 2)
    return np.column_stack([position, np.log2(scale), theta])


def hough_clusters(poses: np.ndarray, reference: np.ndarray, sizes: np.ndarray, *, angle_bin: float = 30.0,
                   scale_factor: float = 2.0, location_bin: float = 0.25, min_votes: int = 3) -> list[PoseCluster]:
    """Vote the poses into a 4-D histogram per reference and return the bins with at least `min_votes`.

    Args:
        poses: the output of `predict_poses`.
        reference: which reference each match belongs to.
        sizes: the largest side of each reference image, in pixels.
        angle_bin: orientation bin width in degrees (must divide 360, at most 180).
        scale_factor: scale bin width as a ratio.
        location_bin: position bin width as a fraction of the reference's largest side times the scale of
            the bin (the scale bin's centre).
        min_votes: the fewest votes a kept bin has.

    Returns:
        The clusters, most votes first (ties in bin order).

    Shape:
        - poses: (M, 4), reference: (M,) int, sizes: (R,).
    """
    poses = np.asarray(poses, np.float64).reshape(-1, 4)
    reference = np.asarray(reference, np.int64).reshape(-1)
    num_angles = round(360.0 / angle_bin)
    if not (np.isclose(num_angles * angle_bin, 360.0) and num_angles >= 2):
        raise ValueError(f"angle_bin must divide 360 and be at most 180, got {angle_bin}")
    if len(poses) != len(reference) or len(poses) == 0:
        if len(poses) != len(reference):
            raise ValueError(f"{len(poses)} poses but {len(reference)} reference indices")
        return []
    keys, match = _votes(poses, reference, np.asarray(sizes, np.float64), num_angles, angle_bin,
                         np.log2(scale_factor), location_bin)
    bins, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    kept = np.flatnonzero(counts >= min_votes)
    kept = kept[np.argsort(-counts[kept], kind="stable")]                  # most votes first, ties in bin order
    rank = np.full(len(bins), -1)
    rank[kept] = np.arange(len(kept))
    vote_rank = rank[inverse.reshape(-1)]                                  # (16 M,) -1 for dropped bins
    order = np.flatnonzero(vote_rank >= 0)
    order = order[np.argsort(vote_rank[order], kind="stable")]
    members = np.split(match[order], np.cumsum(counts[kept])[:-1])
    return [PoseCluster(int(bins[b, 0]), np.sort(m), _bin_centre(bins[b], sizes, angle_bin, scale_factor, location_bin))
            for b, m in zip(kept, members)]


def _votes(poses: np.ndarray, reference: np.ndarray, sizes: np.ndarray, num_angles: int, angle_bin: float,
           log_scale_bin: float, location_bin: float) -> tuple[np.ndarray, np.ndarray]:
    """The 16 bins each match votes for: the 2 nearest in orientation, scale, x and y.

    Shape:
        - Output: keys (16 M, 5) int64 (reference, angle, scale, x, y bins), match (16 M,) int64.
    """
    m = len(poses)
    low = np.floor(poses[:, [3, 2]] / [angle_bin, log_scale_bin] - 0.5).astype(np.int64)   # (M, 2) angle, scale
    angle = np.mod(low[:, 0, None] + np.array([0, 1]), num_angles)                        # (M, 2)
    scale = low[:, 1, None] + np.array([0, 1])                                            # (M, 2)
    # the position grid of each scale bin: cells of location_bin * size * (bin scale)
    width = location_bin * sizes[reference][:, None] * 2.0 ** ((scale + 0.5) * log_scale_bin)   # (M, 2)
    x_low = np.floor(poses[:, 0, None] / width - 0.5).astype(np.int64)                    # (M, 2) per scale bin
    y_low = np.floor(poses[:, 1, None] / width - 0.5).astype(np.int64)                    # (M, 2)
    a, s, dx, dy = np.meshgrid(*[np.arange(2)] * 4, indexing="ij")                        # (2, 2, 2, 2) each
    a, s, dx, dy = a.ravel(), s.ravel(), dx.ravel(), dy.ravel()                           # (16,)
    keys = np.stack([np.broadcast_to(reference[:, None], (m, 16)), angle[:, a], scale[:, s],
                     x_low[:, s] + dx, y_low[:, s] + dy], axis=2)                         # (M, 16, 5)
    match = np.broadcast_to(np.arange(m)[:, None], (m, 16))                               # (M, 16)
    return keys.reshape(-1, 5), match.reshape(-1)


def _bin_centre(key: np.ndarray, sizes: np.ndarray, angle_bin: float, scale_factor: float,
                location_bin: float) -> np.ndarray:
    reference, angle, scale, x, y = (int(v) for v in key)
    bin_scale = scale_factor ** (scale + 0.5)
    width = location_bin * float(np.asarray(sizes)[reference]) * bin_scale
    return np.array([(x + 0.5) * width, (y + 0.5) * width, bin_scale, (angle + 0.5) * angle_bin])
