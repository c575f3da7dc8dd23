"""Random homographies, warps and photometric jitter: points and pixels move together, compositions and
inverses hold, and a seed gives the same result."""
import cv2
import numpy as np
import pytest
import skimage.data

from ninshiki.match.features import image_outline
from ninshiki.match.geometry import polygon_area
from ninshiki.match.homography import photometric_jitter, random_homography, warp_image, warp_points


def test_a_bright_dot_moves_where_the_homography_says() -> None:
    rng = np.random.default_rng(3)
    checked = 0
    for _ in range(5):
        matrix = random_homography(120, 160, rng)
        dot = rng.uniform([50, 40], [110, 80])                                   # (2,) away from the border
        image = np.zeros((120, 160), np.float32)
        yy, xx = np.mgrid[:120, :160]
        image += np.exp(-((xx - dot[0]) ** 2 + (yy - dot[1]) ** 2) / (2 * 2.0 ** 2))   # a smooth blob at `dot`
        warped, valid = warp_image(image, matrix)
        expected = warp_points(dot[None], matrix)[0]
        if not valid[tuple(np.rint(expected[::-1]).astype(int))]:
            continue
        weights = np.where(warped > 0.2 * warped.max(), warped, 0)               # the blob's core
        centroid = np.array([(weights * xx).sum(), (weights * yy).sum()]) / weights.sum()
        assert np.linalg.norm(centroid - expected) < 0.35, (centroid, expected)
        checked += 1
    assert checked >= 3


def test_warp_points_agrees_with_opencv_and_the_mask_with_a_warped_white_image() -> None:
    rng = np.random.default_rng(0)
    matrix = random_homography(90, 110, rng, max_angle=40)
    points = rng.uniform(0, 100, (30, 2))
    np.testing.assert_allclose(warp_points(points, matrix), cv2.perspectiveTransform(points[None], matrix)[0],
                               rtol=1e-10)
    white = np.full((90, 110), 1.0, np.float32)
    warped, valid = warp_image(white, matrix, out_size=(100, 120))
    assert warped.shape == valid.shape == (100, 120) and valid.dtype == bool
    assert 0.3 < valid.mean() < 1
    np.testing.assert_allclose(warped[valid], 1.0, atol=1e-3)                    # no border pixel blended in
    assert (warped[~valid] < 1 - 1e-3).mean() > 0.95                             # outside: zero or blended edge


def test_the_mask_is_where_the_source_position_lies_on_the_image() -> None:
    matrix = random_homography(60, 80, np.random.default_rng(2), max_angle=45)
    _, valid = warp_image(np.zeros((60, 80), np.uint8), matrix, out_size=(70, 90))
    grid = np.stack(np.meshgrid(np.arange(90), np.arange(70)), axis=-1).reshape(-1, 2)        # (h * w, 2)
    source = warp_points(grid, np.linalg.inv(matrix))
    inside = ((source >= 0) & (source <= [79, 59])).all(axis=1).reshape(70, 90)
    # OpenCV interpolates at 1/32-pixel steps: the two may differ only that close to the image's edge
    distance = np.minimum(np.abs(source), np.abs(source - [79, 59])).min(axis=1).reshape(70, 90)
    assert valid.sum() > 1000 and np.all((valid == inside) | (distance < 1 / 32 + 1e-6))


def test_colour_images_keep_their_channels_and_dtype() -> None:
    photo = skimage.data.astronaut()[::4, ::4]                                   # (128, 128, 3) uint8
    matrix = random_homography(128, 128, np.random.default_rng(1))
    warped, valid = warp_image(photo, matrix)
    assert warped.shape == photo.shape and warped.dtype == np.uint8 and valid.shape == (128, 128)
    single, _ = warp_image(photo[:, :, :1], matrix)
    assert single.shape == (128, 128, 1)
    np.testing.assert_array_equal(single[:, :, 0], warped[:, :, 0])


def test_composition_and_inverse_identities() -> None:
    rng = np.random.default_rng(7)
    a, b = random_homography(200, 300, rng), random_homography(200, 300, rng)
    points = rng.uniform(0, 300, (50, 2))
    np.testing.assert_allclose(warp_points(warp_points(points, a), b), warp_points(points, b @ a), atol=1e-8)
    np.testing.assert_allclose(warp_points(warp_points(points, a), np.linalg.inv(a)), points, atol=1e-8)
    photo = cv2.cvtColor(skimage.data.coffee(), cv2.COLOR_RGB2GRAY)[100:300, 150:450].astype(np.float32)
    twice, valid_twice = warp_image(warp_image(photo, a)[0], b)
    once, valid_once = warp_image(photo, b @ a)
    inner = cv2.erode(valid_twice.astype(np.uint8) & valid_once, np.ones((5, 5), np.uint8)).astype(bool)
    assert inner.mean() > 0.2
    # two bilinear resamplings blur a little more than one: compare on the scale of the photo's 0..255 levels
    assert np.median(np.abs(twice - once)[inner]) < 4.0


def test_homographies_are_plausible_and_respect_the_ranges() -> None:
    rng = np.random.default_rng(11)
    outline = image_outline(240, 320)
    for _ in range(50):
        matrix = random_homography(240, 320, rng, max_angle=30, scale=(0.7, 1.4))
        assert matrix.shape == (3, 3) and matrix.dtype == np.float64 and matrix[2, 2] == 1
        w = outline @ matrix[2, :2] + matrix[2, 2]
        assert np.all(w > 0)
        corners = warp_points(outline, matrix)
        ratio = polygon_area(corners) / polygon_area(outline)                    # > 0: not mirrored
        assert 0.7 ** 2 * 0.5 < ratio < 1.4 ** 2 * 2
        overlap, _ = cv2.intersectConvexConvex(corners.astype(np.float32), outline.astype(np.float32))
        assert overlap >= 0.7 * min(abs(polygon_area(corners)), abs(polygon_area(outline))) - 1


def test_rotation_only_homography_rotates_about_the_centre_by_at_most_max_angle() -> None:
    rng = np.random.default_rng(5)
    for _ in range(20):
        matrix = random_homography(101, 101, rng, max_angle=20, scale=(1, 1), perspective=0, max_shift=0, shear=0)
        np.testing.assert_allclose(warp_points(np.array([[50.0, 50.0]]), matrix), [[50, 50]], atol=1e-9)
        angle = np.degrees(np.arctan2(matrix[1, 0], matrix[0, 0]))
        assert abs(angle) <= 20
        np.testing.assert_allclose(matrix[:2, :2] @ matrix[:2, :2].T, np.eye(2), atol=1e-12)


def test_the_same_seed_gives_the_same_homography_and_jitter() -> None:
    photo = cv2.cvtColor(skimage.data.chelsea(), cv2.COLOR_RGB2GRAY)
    draws = [(random_homography(300, 451, np.random.default_rng(42)),
              photometric_jitter(photo, np.random.default_rng(42))) for _ in range(2)]
    np.testing.assert_array_equal(draws[0][0], draws[1][0])
    np.testing.assert_array_equal(draws[0][1], draws[1][1])
    assert not np.array_equal(random_homography(300, 451, np.random.default_rng(43)), draws[0][0])


def test_photometric_jitter_ranges() -> None:
    photo = cv2.cvtColor(skimage.data.chelsea(), cv2.COLOR_RGB2GRAY)
    same = photometric_jitter(photo, np.random.default_rng(0), brightness=0, contrast=0, gamma=0, noise=0, blur=0)
    np.testing.assert_array_equal(same, photo)
    changed = photometric_jitter(photo, np.random.default_rng(0))
    assert changed.shape == photo.shape and changed.dtype == np.uint8
    difference = np.abs(changed.astype(float) - photo)
    assert 0 < difference.mean() < 60
    brighter = photometric_jitter(photo, np.random.default_rng(1), brightness=0.2, contrast=0, gamma=0, noise=0,
                                  blur=0)
    offset = brighter.astype(float) - photo
    unclipped = (photo > 60) & (photo < 190)
    assert np.ptp(offset[unclipped]) <= 1 and abs(offset[unclipped].mean()) <= 0.2 * 255 + 0.5
    colour = photometric_jitter(skimage.data.astronaut(), np.random.default_rng(0))
    assert colour.shape == (512, 512, 3)


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.float32), np.zeros((2, 2, 2, 2), np.uint8)])
def test_bad_inputs_are_refused(bad) -> None:
    with pytest.raises(ValueError, match="photometric_jitter"):
        photometric_jitter(bad, np.random.default_rng(0))
    with pytest.raises(ValueError, match="scale"):
        random_homography(10, 10, np.random.default_rng(0), scale=(2.0, 1.0))
    with pytest.raises(ValueError, match="no sample"):
        random_homography(500, 500, np.random.default_rng(0), perspective=10.0)   # corners behind the camera
