"""Geometric verification: a homography (or affine map) from reference to scene, fitted by RANSAC, and the
checks that reject geometrically impossible fits.

A planar object seen by a pinhole camera moves by a homography; an affine map is its approximation for
small objects far away (Lowe 2004, section 7.4, fits an affine map to each Hough cluster). RANSAC is
OpenCV's (`cv2.findHomography`, `cv2.estimateAffine2D`; fixed random seed, so results are repeatable).
RANSAC will fit *some* homography to as few as 4 matches, so a fit is kept only if the reference's outline
projects to a plausible picture of a plane: in front of the camera, convex, not self-intersecting, not
mirrored, and scaled within bounds as a whole and along each side.
"""
from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

Model = Literal["homography", "affine"]
MIN_POINTS = {"homography": 4, "affine": 3}


def fit_transform(src: np.ndarray, dst: np.ndarray, *, model: Model = "homography", threshold: float = 4.0,
                  max_iters: int = 2000, confidence: float = 0.995) -> tuple[np.ndarray | None, np.ndarray]:
    """RANSAC fit of the map taking `src` onto `dst`, refined on its inliers.

    Args:
        src, dst: matched points (reference, scene).
        model: "homography" (8 degrees of freedom) or "affine" (6).
        threshold: largest reprojection error of an inlier, in scene pixels.
        max_iters, confidence: RANSAC's iteration cap and stopping confidence.

    Returns:
        The map as a 3x3 matrix (last row 0, 0, 1 for affine), or None when there are too few points or
        no fit; the inlier mask (all False without a fit).

    Shape:
        - src, dst: (M, 2). Output: (3, 3) float64 or None, (M,) bool.
    """
    src = np.ascontiguousarray(src, np.float64).reshape(-1, 2)
    dst = np.ascontiguousarray(dst, np.float64).reshape(-1, 2)
    none = np.zeros(len(src), bool)
    if model not in MIN_POINTS:
        raise ValueError(f"model must be 'homography' or 'affine', got {model!r}")
    if len(src) < MIN_POINTS[model]:
        return None, none
    if model == "homography":
        matrix, mask = cv2.findHomography(src, dst, cv2.RANSAC, threshold, maxIters=max_iters, confidence=confidence)
    else:
        matrix, mask = cv2.estimateAffine2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=threshold,
                                            maxIters=max_iters, confidence=confidence)
        matrix = None if matrix is None else np.vstack([matrix, [0.0, 0.0, 1.0]])
    if matrix is None or mask is None or not np.all(np.isfinite(matrix)):
        return None, none
    return matrix.astype(np.float64), mask.reshape(-1).astype(bool)


def refit(src: np.ndarray, dst: np.ndarray, matrix: np.ndarray, *, model: Model = "homography",
          threshold: float = 4.0, rounds: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Gather every match the map explains and refit on them by least squares (Lowe's top-down step).

    Each round takes the matches within `threshold` of the current map and fits again on all of them; the map
    is kept as it is if a round has too few of them.

    Shape:
        - src, dst: (M, 2); matrix: (3, 3). Output: (3, 3) float64 and the final inlier mask (M,) bool.
    """
    src = np.asarray(src, np.float64).reshape(-1, 2)
    dst = np.asarray(dst, np.float64).reshape(-1, 2)
    inliers = reprojection_errors(matrix, src, dst) < threshold
    for _ in range(rounds):
        if inliers.sum() < MIN_POINTS[model]:
            break
        if model == "homography":
            fitted, _ = cv2.findHomography(src[inliers], dst[inliers], 0)
        else:
            fitted, _ = cv2.estimateAffine2D(src[inliers], dst[inliers], method=cv2.LMEDS)
            fitted = None if fitted is None else np.vstack([fitted, [0.0, 0.0, 1.0]])
        if fitted is None or not np.all(np.isfinite(fitted)):
            break
        matrix = fitted.astype(np.float64)
        inliers = reprojection_errors(matrix, src, dst) < threshold
    return matrix, inliers


def project(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 3x3 projective map to points (points mapped to infinity come out as inf or nan).

    Shape:
        - matrix: (3, 3), points: (N, 2). Output: (N, 2) float64.
    """
    points = np.asarray(points, np.float64).reshape(-1, 2)
    homogeneous = points @ matrix[:, :2].T + matrix[:, 2]                   # (N, 3)
    with np.errstate(divide="ignore", invalid="ignore"):
        return homogeneous[:, :2] / homogeneous[:, 2:]


def reprojection_errors(matrix: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Distance between each projected `src` point and its `dst` (inf where the projection is not finite).

    Shape:
        - src, dst: (M, 2). Output: (M,) float64.
    """
    errors = np.linalg.norm(project(matrix, src) - np.asarray(dst, np.float64).reshape(-1, 2), axis=1)
    return np.where(np.isfinite(errors), errors, np.inf)


def polygon_area(points: np.ndarray) -> float:
    """Signed area (shoelace); positive when the vertices turn clockwise on screen (y down).

    Shape:
        - points: (N, 2).
    """
    x, y = np.asarray(points, np.float64).T
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def is_plausible(matrix: np.ndarray, outline: np.ndarray, *, max_scale_change: float = 8.0) -> bool:
    """Whether `matrix` maps the reference `outline` (a convex polygon) to a plausible view of it.

    Plausible: no vertex on or beyond the horizon (homogeneous w of one sign), the projected polygon convex
    and simple (every turn in the same direction; implied by the first test in exact arithmetic, checked to
    catch near-degenerate maps), not mirrored (turning the same way as the outline), its area scaled by at
    most `max_scale_change` squared and each side by at most `max_scale_change`, either way.

    Shape:
        - matrix: (3, 3), outline: (K, 2) with K >= 3, vertices in order.
    """
    outline = np.asarray(outline, np.float64).reshape(-1, 2)
    if not np.all(np.isfinite(matrix)):
        return False
    w = outline @ matrix[2, :2] + matrix[2, 2]                              # (K,)
    if not (np.all(w > 0) or np.all(w < 0)):                                # H and -H are the same map
        return False
    projected = project(matrix, outline)                                   # (K, 2)
    sign = np.sign(polygon_area(outline))
    if not np.all(sign * _turns(projected) > 0):                            # convex, simple, same handedness
        return False
    area_ratio = polygon_area(projected) / polygon_area(outline)
    side_ratio = _sides(projected) / np.maximum(_sides(outline), 1e-12)    # (K,)
    limit = max_scale_change
    return bool(limit ** -2 <= area_ratio <= limit ** 2 and np.all((side_ratio >= 1 / limit) & (side_ratio <= limit)))


def _turns(points: np.ndarray) -> np.ndarray:
    """Cross product of consecutive edges at each vertex: the sign says which way the polygon turns there."""
    edges = np.roll(points, -1, axis=0) - points                            # (K, 2)
    following = np.roll(edges, -1, axis=0)
    return edges[:, 0] * following[:, 1] - edges[:, 1] * following[:, 0]   # (K,)


def _sides(points: np.ndarray) -> np.ndarray:
    return np.linalg.norm(np.roll(points, -1, axis=0) - points, axis=1)     # (K,)
