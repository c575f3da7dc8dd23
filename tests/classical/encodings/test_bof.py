"""Bag-of-Features against direct counts; soft assignment; spatial pyramid bookkeeping; normalisation."""
from __future__ import annotations

import numpy as np
import pytest

from ninshiki.classical.encodings import bof_encode, codebook_sigma, num_cells, soft_assign


def _images(rng: np.random.Generator, counts: list[int], dim: int = 6, size: int = 20):
    desc = [rng.normal(size=(m, dim)).astype(np.float32) for m in counts]
    xy = [rng.uniform(-0.5, size - 0.5, size=(m, 2)).astype(np.float32) for m in counts]
    return desc, xy


def test_hard_histograms_are_nearest_centre_counts() -> None:
    rng = np.random.default_rng(0)
    desc, _ = _images(rng, [30, 1, 0, 17])
    centres = rng.normal(size=(7, 6)).astype(np.float32)
    hist = bof_encode(desc, centres, normalise=False, chunk=3)       # chunk 3: a batch boundary inside
    for d, h in zip(desc, hist):
        expected = np.zeros(7)
        for x in d:                                                  # the obvious way, descriptor by descriptor
            expected[np.argmin([np.linalg.norm(x - c) for c in centres])] += 1
        np.testing.assert_array_equal(h, expected)


def test_soft_assignment_rows_sum_to_one_before_normalisation() -> None:
    rng = np.random.default_rng(1)
    desc, _ = _images(rng, [12, 5])
    centres = rng.normal(size=(9, 6))
    weights = soft_assign(desc[0], centres, sigma=0.7)               # (12, 9)
    np.testing.assert_allclose(weights.sum(axis=1), 1, rtol=1e-12)
    d2 = ((desc[0][:, None, :] - centres[None]) ** 2).sum(-1)       # (12, 9)
    reference = np.exp(-d2 / (2 * 0.7**2))
    np.testing.assert_allclose(weights, reference / reference.sum(1, keepdims=True), rtol=1e-9)
    hist = bof_encode(desc, centres, soft=True, sigma=0.7, normalise=False)
    np.testing.assert_allclose(hist.sum(axis=1), [12, 5], rtol=1e-6)
    # far from every centre the weights do not underflow to 0 / 0
    assert np.isfinite(soft_assign(desc[0] + 1e3, centres, sigma=0.01)).all()
    with pytest.raises(ValueError, match="sigma"):
        bof_encode(desc, centres, soft=True)


def test_pyramid_cells_add_up_to_the_level_zero_histogram() -> None:
    rng = np.random.default_rng(2)
    desc, xy = _images(rng, [40, 25, 0])
    centres = rng.normal(size=(5, 6))
    hist = bof_encode(desc, centres, pyramid=(1, 2, 3), xy=xy, image_size=(20, 20), normalise=False)
    assert hist.shape == (3, num_cells((1, 2, 3)) * 5) == (3, 14 * 5)
    cells = hist.reshape(3, 14, 5)
    np.testing.assert_allclose(cells[:, 1:5].sum(1), cells[:, 0])   # the four quadrants
    np.testing.assert_allclose(cells[:, 5:14].sum(1), cells[:, 0])  # the nine cells of the 3x3 level
    np.testing.assert_array_equal(cells[:, 0], bof_encode(desc, centres, normalise=False))


def test_pyramid_cell_of_a_descriptor() -> None:
    centres = np.eye(2)
    desc = [np.array([[1.0, 0.0], [0.0, 1.0]])]
    xy = [np.array([[3.0, 2.0], [12.0, 7.0]])]                       # image 10 high, 16 wide
    cells = bof_encode(desc, centres, pyramid=(2,), xy=xy, image_size=(10, 16), normalise=False).reshape(4, 2)
    expected = np.zeros((4, 2))
    expected[0, 0] = 1                                               # top-left quadrant, word 0
    expected[3, 1] = 1                                               # bottom-right (y 7 >= 5, x 12 >= 8), word 1
    np.testing.assert_array_equal(cells, expected)
    with pytest.raises(ValueError, match="xy"):
        bof_encode(desc, centres, pyramid=(1, 2))


def test_normalisation_is_level_l1_then_sqrt_then_l2() -> None:
    rng = np.random.default_rng(3)
    desc, xy = _images(rng, [30, 9, 0])
    centres = rng.normal(size=(4, 6))
    raw = bof_encode(desc, centres, pyramid=(1, 2), xy=xy, image_size=(20, 20), normalise=False)
    out = bof_encode(desc, centres, pyramid=(1, 2), xy=xy, image_size=(20, 20))
    for r, o, m in zip(raw, out, (30, 9, 0)):
        if m == 0:
            np.testing.assert_array_equal(o, 0)                      # no descriptor: a zero vector, not NaN
            continue
        expected = np.sqrt(r / m)
        np.testing.assert_allclose(o, expected / np.linalg.norm(expected), rtol=1e-6)


def test_codebook_sigma_is_the_rms_distance_to_the_nearest_centre() -> None:
    centres = np.array([[0.0, 0.0], [10.0, 0.0]])
    desc = np.array([[0.0, 3.0], [10.0, 4.0]])
    assert codebook_sigma(desc, centres) == pytest.approx(np.sqrt((9 + 16) / 2))
