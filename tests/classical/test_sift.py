"""Dense and keypoint SIFT through OpenCV, RootSIFT, grayscale conversion."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data

from ninshiki.classical.sift import dense_sift, extract_sift, grid_points, keypoint_sift, root_sift, to_gray


def test_grid_points_are_centred_with_the_given_step() -> None:
    xy = grid_points(28, 20, step=4)
    assert xy.shape == (7 * 5, 2) and xy.dtype == np.float32
    xs, ys = np.unique(xy[:, 0]), np.unique(xy[:, 1])
    np.testing.assert_allclose(np.diff(xs), 4)
    np.testing.assert_allclose(np.diff(ys), 4)
    # equal margins on both sides: the grid's centre is the image's centre (pixel centres at integers)
    assert xs.mean() == pytest.approx((20 - 1) / 2) and ys.mean() == pytest.approx((28 - 1) / 2)
    assert len(grid_points(5, 5, step=10)) == 1
    with pytest.raises(ValueError, match="step"):
        grid_points(5, 5, step=0)


def test_dense_sift_shapes_values_and_positions() -> None:
    gray = skimage.data.camera()[100:164, 200:264]                  # (64, 64) uint8
    desc, xy = dense_sift(gray, step=8, size=3)
    assert desc.shape == (64, 128) and desc.dtype == np.float32
    np.testing.assert_array_equal(xy, grid_points(64, 64, step=8))
    # OpenCV's descriptor: L2-normalised, clipped at 0.2, renormalised, times 512, saturated to bytes
    assert desc.min() >= 0 and desc.max() <= 255 and np.all(desc == np.round(desc))
    norms = np.linalg.norm(desc, axis=1)
    assert np.all((norms > 400) & (norms < 560))                    # 512 up to the rounding to integers


def test_size_is_the_bin_width_in_input_pixels() -> None:
    # A vertical step edge at offset (j - 1.5) bins from the centre lands in the j-th column of 4x4 bins.
    for size in (4, 6):
        for column, offset in enumerate((-1.5, -0.5, 0.5, 1.5)):
            img = np.zeros((96, 96), np.uint8)
            img[:, round(48 + offset * size):] = 200                 # gradient at 47.5 + offset * size
            desc, xy = dense_sift(img, step=96, size=size)           # one point, at the centre (47.5, 47.5)
            np.testing.assert_array_equal(xy, [[47.5, 47.5]])
            energy = desc.reshape(4, 4, 8).sum(axis=(0, 2))          # (4,) per column of bins
            assert energy.argmax() == column, (size, offset, energy)


def test_upscaling_keeps_positions_in_input_pixels() -> None:
    gray = skimage.data.camera()[::8, ::8]                           # (64, 64)
    desc1, xy1 = dense_sift(gray, step=4, size=2)
    desc2, xy2 = dense_sift(gray, step=4, size=2, upscale=2)
    np.testing.assert_array_equal(xy1, xy2)
    assert desc2.shape == desc1.shape
    # the same patches seen at twice the resolution: similar, not identical (OpenCV's fixed 1.6 px smoothing)
    cos = (root_sift(desc1) * root_sift(desc2)).sum(axis=1)
    assert np.median(cos) > 0.8 and not np.array_equal(desc1, desc2)


def test_dense_sift_moves_with_the_image() -> None:
    gray = skimage.data.camera()[::4, ::4][:96, :96].copy()          # (96, 96)
    shifted = np.zeros_like(gray)
    shifted[:, 8:] = gray[:, :-8]                                    # content moves 8 px right: 2 grid steps
    desc, xy = dense_sift(gray, step=4, size=2)
    desc_s, xy_s = dense_sift(shifted, step=4, size=2)
    inner = (xy[:, 0] > 20) & (xy[:, 0] < 70) & (xy[:, 1] > 12) & (xy[:, 1] < 84)
    moved = np.array([np.flatnonzero((xy_s == p + [8, 0]).all(axis=1))[0] for p in xy[inner]])
    np.testing.assert_array_equal(desc_s[moved], desc[inner])


def test_keypoint_sift_on_a_photo_and_on_a_blank_image() -> None:
    gray = skimage.data.camera()[::2, ::2].copy()                    # (256, 256)
    desc, xy = keypoint_sift(gray, max_features=50)
    assert 10 <= len(desc) <= 50 and desc.shape[1] == 128 and xy.shape == (len(desc), 2)
    assert xy.min() >= 0 and xy.max() < 256
    _, up_xy = keypoint_sift(gray, max_features=50, upscale=2)
    assert up_xy.min() >= 0 and up_xy.max() < 256                   # positions in input pixels
    desc, xy = keypoint_sift(np.full((40, 40), 128, np.uint8), max_features=10)
    assert desc.shape == (0, 128) and xy.shape == (0, 2)
    with pytest.raises(ValueError, match="max_features"):
        keypoint_sift(gray, max_features=0)


def test_root_sift_is_the_hellinger_map() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (5, 128)).astype(np.float32)
    b = rng.integers(0, 256, (5, 128)).astype(np.float32)
    ra, rb = root_sift(a), root_sift(b)
    np.testing.assert_allclose(np.linalg.norm(ra, axis=1), 1, rtol=1e-6)
    # dot products of RootSIFT vectors = Bhattacharyya coefficients of the L1-normalised histograms
    p, q = a / a.sum(1, keepdims=True), b / b.sum(1, keepdims=True)
    np.testing.assert_allclose((ra * rb).sum(1), np.sqrt(p * q).sum(1), rtol=1e-5)
    np.testing.assert_array_equal(root_sift(np.zeros((2, 128))), 0)


def test_to_gray_matches_opencv() -> None:
    rgb = skimage.data.astronaut()[::8, ::8]                         # (64, 64, 3)
    ours = to_gray(rgb.transpose(2, 0, 1)[None].copy())[0]
    theirs = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    assert np.abs(ours.astype(int) - theirs).max() <= 1              # OpenCV rounds in fixed point
    single = rgb[None, None, :, :, 0].copy()                        # (1, 1, H, W)
    np.testing.assert_array_equal(to_gray(single)[0], rgb[:, :, 0])
    with pytest.raises(ValueError, match="uint8"):
        to_gray(np.zeros((1, 2, 8, 8), np.uint8))


def test_extract_sift_over_a_batch() -> None:
    images = skimage.data.camera()[:128, :128].reshape(4, 32, 128)[:, :, :32].copy()   # (4, 32, 32)
    desc, xy = extract_sift(images, step=4, size=2, root=True)
    assert len(desc) == len(xy) == 4 and all(d.shape == (64, 128) for d in desc)
    single, _ = dense_sift(images[2], step=4, size=2)
    np.testing.assert_allclose(desc[2], root_sift(single))
    desc, xy = extract_sift(images, max_features=5)
    assert all(len(d) <= 5 and len(d) == len(p) for d, p in zip(desc, xy))
    with pytest.raises(ValueError, match="grayscale"):
        extract_sift(images[0])
    with pytest.raises(ValueError, match="uint8"):
        dense_sift(images[0].astype(np.float32), step=4, size=2)
