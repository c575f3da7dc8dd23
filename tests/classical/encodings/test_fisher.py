"""Fisher Vectors against a slow reference (the paper's equations term by term) and scikit-image's."""
from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.feature import fisher_vector, learn_gmm

from ninshiki.classical.encodings import DiagonalGMM, fisher_encode, fit_gmm


def _gmm(rng: np.random.Generator, k: int, dim: int) -> DiagonalGMM:
    weights = rng.uniform(0.5, 1.5, k)
    return DiagonalGMM(weights / weights.sum(), rng.normal(size=(k, dim)), rng.uniform(0.3, 2.0, (k, dim)))


def _reference(desc: np.ndarray, gmm: DiagonalGMM, power: float) -> np.ndarray:
    """Perronnin, Sanchez & Mensink 2010, equations 7-8, then signed power and L2, one descriptor at a time."""
    k, dim = gmm.means.shape
    g_mu, g_sigma = np.zeros((k, dim)), np.zeros((k, dim))
    for x in desc:
        likelihood = np.array([gmm.weights[j] * math.prod(
            math.exp(-(x[d] - gmm.means[j, d]) ** 2 / (2 * gmm.variances[j, d]))
            / math.sqrt(2 * math.pi * gmm.variances[j, d]) for d in range(dim)) for j in range(k)])
        gamma = likelihood / likelihood.sum()
        for j in range(k):
            u = (x - gmm.means[j]) / np.sqrt(gmm.variances[j])
            g_mu[j] += gamma[j] * u / (len(desc) * np.sqrt(gmm.weights[j]))
            g_sigma[j] += gamma[j] * (u**2 - 1) / (len(desc) * np.sqrt(2 * gmm.weights[j]))
    fv = np.concatenate([g_mu.ravel(), g_sigma.ravel()])
    fv = np.sign(fv) * np.abs(fv) ** power
    return fv / np.linalg.norm(fv)


@pytest.mark.parametrize("power", [0.5, 1.0])
def test_fisher_vector_matches_the_reference(power: float) -> None:
    rng = np.random.default_rng(0)
    gmm = _gmm(rng, 4, 3)
    desc = [rng.normal(size=(m, 3)) for m in (20, 1, 7)]
    ours = fisher_encode(desc, gmm, power=power, chunk=2)
    assert ours.shape == (3, 2 * 4 * 3) and ours.dtype == np.float32
    for d, o in zip(desc, ours):
        np.testing.assert_allclose(o, _reference(d, gmm, power), rtol=1e-5, atol=1e-6)


def test_pyramid_cells_are_fisher_vectors_of_their_descriptors() -> None:
    rng = np.random.default_rng(1)
    gmm = _gmm(rng, 3, 2)
    desc, xy = rng.normal(size=(30, 2)), rng.uniform(0, 9, size=(30, 2))   # image 10 x 10
    raw = fisher_encode([desc, desc[:0]], gmm, pyramid=(1, 2), xy=[xy, xy[:0]], image_size=(10, 10),
                        normalise=False).reshape(2, 5, -1)
    np.testing.assert_allclose(raw[0, 0], fisher_encode([desc], gmm, normalise=False)[0], rtol=1e-6)
    right_bottom = (xy[:, 0] + 0.5 >= 5) & (xy[:, 1] + 0.5 >= 5)
    np.testing.assert_allclose(raw[0, 4], fisher_encode([desc[right_bottom]], gmm, normalise=False)[0], rtol=1e-6)
    np.testing.assert_array_equal(raw[1], 0)                         # no descriptor: zeros, not NaN


def test_agrees_with_scikit_image() -> None:
    rng = np.random.default_rng(2)
    train = [rng.normal(size=(40, 5)) + rng.normal(scale=3, size=5) for _ in range(10)]
    sk_gmm = learn_gmm(train, n_modes=4, gm_args={"covariance_type": "diag", "random_state": 0})
    gmm = DiagonalGMM(sk_gmm.weights_, sk_gmm.means_, sk_gmm.covariances_)
    desc = rng.normal(size=(25, 5)) + 1.0
    np.testing.assert_allclose(gmm.posteriors(desc), sk_gmm.predict_proba(desc), rtol=1e-6, atol=1e-12)
    ours = fisher_encode([desc], gmm, normalise=False)[0].reshape(2, 4, 5)
    theirs = fisher_vector(desc, sk_gmm)                             # [d_pi (4), d_mu (4 * 5), d_sigma (4 * 5)]
    np.testing.assert_allclose(ours[0].ravel(), theirs[4:24], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ours[1].ravel(), -theirs[24:], rtol=1e-5, atol=1e-7)   # skimage: the opposite sign


def test_fit_gmm() -> None:
    rng = np.random.default_rng(3)
    desc = np.concatenate([rng.normal(loc=-5, size=(500, 2)), rng.normal(loc=5, scale=2, size=(500, 2))])
    gmm = fit_gmm(desc, 2, seed=0)
    order = np.argsort(gmm.means[:, 0])
    np.testing.assert_allclose(gmm.weights[order], [0.5, 0.5], atol=0.01)
    np.testing.assert_allclose(gmm.means[order], [[-5, -5], [5, 5]], atol=0.3)
    np.testing.assert_allclose(gmm.variances[order], [[1, 1], [4, 4]], rtol=0.2)
    with pytest.raises(ValueError, match="at least 3 descriptors"):
        fit_gmm(desc[:2], 3)
