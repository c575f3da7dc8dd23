"""VLAD against a slow, obviously correct implementation, descriptor by descriptor."""
from __future__ import annotations

import numpy as np
import pytest

from ninshiki.classical.encodings import vlad_encode


def _reference(desc: np.ndarray, xy: np.ndarray, centres: np.ndarray, size: tuple[int, int], pyramid: tuple[int, ...],
               intra: bool, power: float) -> np.ndarray:
    """Jegou et al. 2010 (+ intra-normalisation, Arandjelovic & Zisserman 2013), one descriptor at a time."""
    k, dim = centres.shape
    blocks = []
    for g in pyramid:
        for row in range(g):
            for col in range(g):
                v = np.zeros((k, dim))
                for x, (px, py) in zip(desc, xy):
                    in_col = min(g - 1, int((px + 0.5) / size[1] * g)) == col
                    in_row = min(g - 1, int((py + 0.5) / size[0] * g)) == row
                    if in_col and in_row:
                        nearest = int(np.argmin([np.sum((x - c) ** 2) for c in centres]))
                        v[nearest] += x - centres[nearest]
                if intra:
                    for j in range(k):
                        norm = np.sqrt(np.sum(v[j] ** 2))
                        v[j] = v[j] / norm if norm > 0 else v[j]
                blocks.append(v.ravel())
    v = np.concatenate(blocks)
    v = np.sign(v) * np.abs(v) ** power
    norm = np.sqrt(np.sum(v**2))
    return v / norm if norm > 0 else v


@pytest.mark.parametrize(("pyramid", "intra", "power"), [((1,), True, 0.5), ((1,), False, 1.0), ((1, 2), True, 0.5),
                                                         ((1, 3), False, 0.5)])
def test_vlad_matches_the_reference(pyramid: tuple[int, ...], intra: bool, power: float) -> None:
    rng = np.random.default_rng(0)
    counts, size = [25, 3, 0, 40], (16, 24)
    desc = [rng.normal(size=(m, 5)).astype(np.float32) for m in counts]
    xy = [rng.uniform(0, 1, size=(m, 2)) * [size[1] - 1, size[0] - 1] for m in counts]
    centres = rng.normal(size=(6, 5)).astype(np.float32)
    ours = vlad_encode(desc, centres, intra=intra, power=power, pyramid=pyramid, xy=xy, image_size=size, chunk=3)
    for d, p, o in zip(desc, xy, ours):
        expected = _reference(d.astype(np.float64), p, centres.astype(np.float64), size, pyramid, intra, power)
        np.testing.assert_allclose(o, expected, rtol=1e-5, atol=1e-6)
    assert ours.shape == (4, sum(g * g for g in pyramid) * 6 * 5)
    np.testing.assert_array_equal(ours[2], 0)                        # no descriptor: zeros, not NaN


def test_raw_residual_sums() -> None:
    rng = np.random.default_rng(1)
    desc = [rng.normal(size=(30, 4))]
    centres = rng.normal(size=(3, 4))
    raw = vlad_encode(desc, centres, normalise=False).reshape(3, 4)
    nearest = np.argmin(((desc[0][:, None] - centres[None]) ** 2).sum(-1), axis=1)   # (30,)
    # summed over centres: sum of descriptors minus the sum of their centres
    np.testing.assert_allclose(raw.sum(0), desc[0].sum(0) - centres[nearest].sum(0), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"shape \(30, 4\).*\(M, 5\)"):
        vlad_encode(desc, rng.normal(size=(3, 5)))
