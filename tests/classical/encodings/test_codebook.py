"""K-means codebooks, distances and assignments; PCA of descriptors."""
from __future__ import annotations

import numpy as np
import pytest

from ninshiki.classical.encodings import fit_codebook, fit_pca, hard_assign, pca_project, squared_distances


def test_codebook_finds_well_separated_clusters() -> None:
    rng = np.random.default_rng(0)
    truth = rng.normal(scale=10, size=(5, 8))                        # (5, 8)
    desc = (truth[rng.integers(0, 5, 2000)] + rng.normal(scale=0.1, size=(2000, 8))).astype(np.float32)
    centres = fit_codebook(desc, 5, seed=0)
    assert centres.shape == (5, 8) and centres.dtype == np.float32
    nearest = np.sqrt(squared_distances(truth, centres.astype(np.float64))).min(axis=1)   # (5,)
    assert nearest.max() < 0.05
    np.testing.assert_array_equal(centres, fit_codebook(desc, 5, seed=0))   # seeded
    with pytest.raises(ValueError, match="at least 5 descriptors"):
        fit_codebook(desc[:4], 5)


def test_distances_and_assignment_match_the_direct_computation() -> None:
    rng = np.random.default_rng(1)
    x, centres = rng.normal(size=(50, 7)), rng.normal(size=(9, 7))
    direct = ((x[:, None, :] - centres[None]) ** 2).sum(-1)         # (50, 9)
    np.testing.assert_allclose(squared_distances(x, centres), direct, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(hard_assign(x, centres), direct.argmin(axis=1))


def test_pca_decorrelates_and_orders_by_variance() -> None:
    rng = np.random.default_rng(2)
    mixing = rng.normal(size=(16, 16))
    desc = (rng.normal(size=(3000, 16)) * np.linspace(5, 0.1, 16)) @ mixing   # (3000, 16) correlated
    mean, components = fit_pca(desc, 6)
    assert mean.shape == (16,) and components.shape == (6, 16)
    y = pca_project(desc, mean, components)                          # (3000, 6)
    cov = np.cov(y, rowvar=False)
    assert np.abs(cov - np.diag(np.diag(cov))).max() < 1e-3 * cov.max()
    assert np.all(np.diff(np.diag(cov)) < 0)
    np.testing.assert_allclose(y.mean(axis=0), 0, atol=1e-3 * np.sqrt(cov.max()))
    mean_w, components_w = fit_pca(desc, 6, whiten=True)
    np.testing.assert_allclose(np.var(pca_project(desc, mean_w, components_w), axis=0, ddof=1), 1, rtol=1e-3)
    with pytest.raises(ValueError, match="PCA to 20"):
        fit_pca(desc, 20)
