"""RANSAC fits, the top-down refit, projections and the plausibility checks."""
import cv2
import numpy as np
import pytest

from ninshiki.match.features import image_outline
from ninshiki.match.geometry import fit_transform, is_plausible, polygon_area, project, refit, reprojection_errors

TRUE_H = np.array([[0.9, -0.2, 40.0], [0.15, 1.1, 25.0], [2e-4, -1e-4, 1.0]])
OUTLINE = image_outline(200, 300)


def correspondences(matrix, count=120, outliers=0.3, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    src = rng.uniform(0, 300, (count, 2))
    dst = project(matrix, src) + rng.normal(0, noise, (count, 2))
    bad = rng.random(count) < outliers
    dst[bad] = rng.uniform(0, 400, (bad.sum(), 2))
    return src, dst, ~bad


def normalised(matrix):
    return matrix / matrix[2, 2]


def test_project_agrees_with_opencv():
    points = np.random.default_rng(0).uniform(0, 300, (50, 2))
    expected = cv2.perspectiveTransform(points[None], TRUE_H)[0]
    np.testing.assert_allclose(project(TRUE_H, points), expected, rtol=1e-12)
    np.testing.assert_allclose(reprojection_errors(TRUE_H, points, expected), 0, atol=1e-9)
    assert np.isinf(reprojection_errors(np.diag([1.0, 1.0, 0.0]), points[:1], points[:1])).all()


def test_homography_ransac_recovers_the_map_and_the_outliers():
    src, dst, good = correspondences(TRUE_H)
    matrix, inliers = fit_transform(src, dst, threshold=2.0)
    np.testing.assert_allclose(normalised(matrix), TRUE_H, rtol=1e-6, atol=1e-8)
    np.testing.assert_array_equal(inliers, good)


def test_affine_ransac_recovers_an_affine_map():
    affine = np.array([[1.2, 0.3, -10.0], [-0.1, 0.8, 30.0], [0.0, 0.0, 1.0]])
    src, dst, good = correspondences(affine, outliers=0.4, seed=1)
    matrix, inliers = fit_transform(src, dst, model="affine", threshold=2.0)
    np.testing.assert_allclose(matrix, affine, atol=1e-5)   # OpenCV's Levenberg-Marquardt stops near 2e-6
    np.testing.assert_array_equal(inliers, good)


def test_too_few_points_give_no_fit():
    src, dst, _ = correspondences(TRUE_H, count=3, outliers=0.0)
    matrix, inliers = fit_transform(src, dst)
    assert matrix is None and inliers.shape == (3,) and not inliers.any()
    matrix, _ = fit_transform(src, dst, model="affine")
    assert matrix is not None
    with pytest.raises(ValueError, match="model"):
        fit_transform(src, dst, model="similarity")


def test_refit_gathers_all_the_matches_a_rough_fit_explains():
    src, dst, good = correspondences(TRUE_H, count=200, noise=0.5, seed=2)
    rough, _ = fit_transform(src[:12][good[:12]], dst[:12][good[:12]], threshold=3.0)   # a few matches only
    matrix, inliers = refit(src, dst, rough, threshold=3.0)
    assert inliers.sum() >= 0.97 * good.sum() and not (inliers & ~good).any()
    corners_error = np.abs(project(matrix, OUTLINE) - project(TRUE_H, OUTLINE)).max()
    assert corners_error < 0.6 < np.abs(project(rough, OUTLINE) - project(TRUE_H, OUTLINE)).max()


@pytest.mark.parametrize("matrix", [
    np.eye(3),
    TRUE_H,
    -TRUE_H,                                                          # the same map
    np.array([[0.0, -2.0, 500.0], [2.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),  # turned by 90 degrees, twice the size
])
def test_plausible_maps(matrix):
    assert is_plausible(matrix, OUTLINE)


@pytest.mark.parametrize("matrix, why", [
    (np.diag([-1.0, 1.0, 1.0]), "mirrored"),
    (np.diag([20.0, 20.0, 1.0]), "scaled 20x"),
    (np.diag([0.05, 0.05, 1.0]), "shrunk 20x"),
    (np.diag([12.0, 0.5, 1.0]), "one side stretched 12x, area 6x"),
    (np.array([[1.0, 0, 0], [0, 1.0, 0], [-0.005, 0, 1.0]]), "the horizon crosses the outline (x = 200)"),
    (np.full((3, 3), np.nan), "not finite"),
])
def test_implausible_maps(matrix, why):
    assert not is_plausible(matrix, OUTLINE), why


def test_bow_tie_outline_is_rejected():
    """A fit whose projected corners cross (a self-intersecting quadrilateral)."""
    crossed = np.array([[0, 0], [300, 200], [300, 0], [0, 200]], np.float32)
    matrix = cv2.getPerspectiveTransform(OUTLINE.astype(np.float32), crossed)
    assert not is_plausible(matrix, OUTLINE)


def test_polygon_area_sign():
    assert polygon_area(OUTLINE) == pytest.approx(300 * 200)           # clockwise on screen: positive
    assert polygon_area(OUTLINE[::-1]) == pytest.approx(-300 * 200)
