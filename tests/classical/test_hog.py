"""HOG descriptors against OpenCV's `cv2.HOGDescriptor.compute` (live golden values) and scikit-image's `hog`.

Tolerance against OpenCV: 1e-6 absolute on descriptor values in [0, 1]. Both sides compute in float32 and
differ only in the order of their sums (measured: at most 2.1e-7 on every case below).

OpenCV 4.x keeps the first L2-Hys threshold its process used in a `static` variable (its SIMD normalisation),
so references for other parameters are computed in fresh Python processes; in this process OpenCV only ever
sees the default 0.2.
"""
from __future__ import annotations

import math
import subprocess
import sys

import cv2
import numpy as np
import pytest
import skimage.data
from skimage.feature import hog as skimage_hog

from ninshiki.classical.hog import HOGParams, align_padding, hog_blocks, hog_descriptor, hog_windows

TOL = 1e-6


def _astronaut_bgr() -> np.ndarray:
    return np.ascontiguousarray(skimage.data.astronaut()[..., ::-1])


def _opencv_args(params: HOGParams) -> tuple:
    return (params.win_size, params.block_size, params.block_stride, params.cell_size, params.nbins, 1,
            float(params.win_sigma), 0, params.l2hys_threshold, params.gamma_correction, 64, params.signed)


def _coffee_crop(params: HOGParams) -> np.ndarray:
    return np.ascontiguousarray(skimage.data.coffee()[37:37 + params.win_size[1] + 13,
                                                      51:51 + params.win_size[0] + 7, ::-1])


@pytest.mark.parametrize("colour", [False, True])
def test_descriptor_equals_opencv_on_astronaut_crops(colour):
    image = _astronaut_bgr() if colour else cv2.cvtColor(_astronaut_bgr(), cv2.COLOR_BGR2GRAY)
    params, reference = HOGParams(), cv2.HOGDescriptor()   # OpenCV's defaults: 64x128, gamma on
    for y, x in [(0, 0), (100, 200), (300, 400), (384, 448)]:     # corners exercise the reflected borders
        crop = np.ascontiguousarray(image[y:y + 128, x:x + 64])
        ours = hog_descriptor(crop, params)
        assert ours.shape == (3780,) and ours.dtype == np.float32
        np.testing.assert_allclose(ours, reference.compute(crop).ravel(), rtol=0, atol=TOL)


@pytest.mark.parametrize("win_stride, padding", [((8, 8), (0, 0)), ((8, 8), (16, 16)), ((16, 8), (8, 8)),
                                                 ((4, 4), (6, 6))])
def test_dense_windows_equal_opencv(win_stride, padding):
    image = np.ascontiguousarray(_astronaut_bgr()[50:250, 100:260])
    ours = hog_windows(image, HOGParams(), win_stride=win_stride, padding=padding)
    reference = cv2.HOGDescriptor().compute(image, winStride=win_stride, padding=padding).ravel()
    assert ours.size == reference.size
    np.testing.assert_allclose(ours.ravel(), reference, rtol=0, atol=TOL)


NON_DEFAULT = [
    HOGParams(win_size=(48, 96), signed=True, nbins=18, gamma_correction=False),
    HOGParams(win_size=(40, 72), block_size=(24, 24), block_stride=(8, 16), win_sigma=2.5, l2hys_threshold=0.3),
    HOGParams(win_size=(30, 28), block_size=(12, 8), block_stride=(6, 4), cell_size=(6, 4), nbins=6,
              win_sigma=math.inf, l2hys_threshold=0.15),
    HOGParams(win_size=(28, 28), block_size=(8, 8), block_stride=(4, 4), cell_size=(4, 4), nbins=1),
]


@pytest.fixture(scope="module")
def opencv_references(tmp_path_factory) -> list[np.ndarray]:
    """cv2 compute(winStride=block stride, padding=(5, 3)) of each NON_DEFAULT case on its coffee crop, each in
    a fresh process (one per case: OpenCV's static L2-Hys threshold)."""
    folder = tmp_path_factory.mktemp("hog_refs")
    references = []
    for i, params in enumerate(NON_DEFAULT):
        np.save(folder / f"{i}.npy", _coffee_crop(params))
        code = (f"import cv2, numpy as np; inf = float('inf'); image = np.load({str(folder / f'{i}.npy')!r}); "
                f"hog = cv2.HOGDescriptor(*{_opencv_args(params)!r}); "
                f"np.save({str(folder / f'ref{i}.npy')!r}, hog.compute(image, winStride={params.block_stride!r}, "
                f"padding=(5, 3)).ravel())")
        subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
        references.append(np.load(folder / f"ref{i}.npy"))
    return references


@pytest.mark.parametrize("case", range(len(NON_DEFAULT)), ids=["signed18", "block3x3", "noGauss6bins", "onebin"])
def test_non_default_parameters_equal_opencv(case, opencv_references):
    params = NON_DEFAULT[case]
    # padding (5, 3) is aligned by OpenCV's power-of-two formula: to 10 for a step of 6 (checked here too)
    ours = hog_windows(_coffee_crop(params), params, win_stride=params.block_stride, padding=(5, 3))
    assert ours.size == opencv_references[case].size
    np.testing.assert_allclose(ours.ravel(), opencv_references[case], rtol=0, atol=TOL)


@pytest.mark.parametrize("gamma", [False, True])
def test_colour_ties_are_broken_as_opencv(gamma):
    """Pixel values 0..3 make equally strong channels common; OpenCV keeps the lower channel on ties in its
    4-column SIMD loop and the higher one in the scalar tail (gradient width 70: 2 tail columns)."""
    image = np.random.default_rng(0).integers(0, 4, (136, 70, 3)).astype(np.uint8)
    params = HOGParams(gamma_correction=gamma)
    ours = hog_windows(image, params, win_stride=(2, 8))
    np.testing.assert_allclose(ours.ravel(), params.to_opencv().compute(image, winStride=(2, 8)).ravel(),
                               rtol=0, atol=TOL)


def test_block_grid_is_shared_by_windows():
    """Windows gathered from one block grid equal descriptors of the cropped windows... away from the image
    border, where the crop's reflected border would differ."""
    image = cv2.cvtColor(_astronaut_bgr(), cv2.COLOR_BGR2GRAY)[100:300, 100:260]
    params = HOGParams()
    windows = hog_windows(image, params, win_stride=(8, 8))                           # (10, 13, 3780)
    blocks = hog_blocks(image, params)                                                # (24, 19, 36)
    assert windows.shape == (10, 13, 3780) and blocks.shape == (24, 19, 36)
    np.testing.assert_array_equal(windows[3, 5].reshape(7, 15, 36).transpose(1, 0, 2), blocks[3:18, 5:12])


def test_agrees_with_skimage_where_interpolation_cannot_matter():
    """One orientation at a bin centre and one magnitude: the interior block equals scikit-image's (after unit
    normalisation: the epsilons differ, see the module docstring of ninshiki.classical.hog). Vertical ramp:
    90 degrees, bin 4 of 9; diagonals: 45 and 135 degrees, bins 1 and 4 of 6. Tolerance 1e-3: OpenCV's
    fastAtan2 is off by ~0.01 degree at 45, which moves 4e-4 of a vote to the next bin."""
    yy, xx = np.mgrid[0:32, 0:32]
    for image, nbins, expected_bin in [((4 * yy).astype(np.uint8), 9, 4), ((2 * xx + 2 * yy).astype(np.uint8), 6, 1),
                                       ((2 * xx + 2 * (31 - yy)).astype(np.uint8), 6, 4)]:
        params = HOGParams(win_size=(32, 32), nbins=nbins, win_sigma=math.inf, gamma_correction=False)
        ours = hog_blocks(image, params)[1, 1].reshape(2, 2, nbins)                    # (cell x, cell y, bin)
        theirs = skimage_hog(image, orientations=nbins, pixels_per_cell=(8, 8), cells_per_block=(2, 2),
                             block_norm="L2-Hys", feature_vector=False)[1, 1]          # (cell y, cell x, bin)
        theirs = theirs.transpose(1, 0, 2)
        ours, theirs = ours / np.linalg.norm(ours), theirs / np.linalg.norm(theirs)
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-3)
        assert np.argmax(ours.sum((0, 1))) == expected_bin


def test_natural_images_differ_from_skimage():
    """The documented difference: OpenCV-style interpolation and Gaussian weighting change the numbers."""
    image = cv2.cvtColor(_astronaut_bgr(), cv2.COLOR_BGR2GRAY)[100:132, 200:232]
    params = HOGParams(win_size=(32, 32), win_sigma=math.inf, gamma_correction=False)
    ours = hog_blocks(image, params)[1, 1].reshape(2, 2, 9)
    theirs = skimage_hog(image, orientations=9, pixels_per_cell=(8, 8), cells_per_block=(2, 2),
                         block_norm="L2-Hys", feature_vector=False)[1, 1].transpose(1, 0, 2)
    assert np.abs(ours / np.linalg.norm(ours) - theirs / np.linalg.norm(theirs)).max() > 0.01


def test_small_images_and_bad_input():
    params = HOGParams()
    assert hog_blocks(np.zeros((8, 8), np.uint8), params).shape == (0, 0, 36)
    assert hog_windows(np.zeros((100, 50), np.uint8), params).shape == (0, 0, 3780)
    with pytest.raises(ValueError, match="uint8"):
        hog_blocks(np.zeros((128, 64), np.float32), params)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        hog_blocks(np.zeros((128, 64, 4), np.uint8), params)
    with pytest.raises(ValueError, match="the window 64x128"):
        hog_descriptor(np.zeros((64, 64), np.uint8), params)
    with pytest.raises(ValueError, match="block stride"):
        HOGParams(win_size=(60, 128))
    with pytest.raises(ValueError, match="multiple of the cell"):
        HOGParams(block_size=(12, 16))


def test_align_padding_is_opencvs_alignsize():
    assert [align_padding(p, 8) for p in (-3, 0, 1, 8, 9)] == [0, 0, 8, 8, 16]
    assert align_padding(5, 6) == 10 and align_padding(3, 4) == 4     # (p + n - 1) & -n, as OpenCV
