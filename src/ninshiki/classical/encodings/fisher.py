"""Fisher Vectors: Perronnin, Sanchez and Mensink, "Improving the Fisher Kernel for Large-Scale Image
Classification" (ECCV 2010), after Perronnin and Dance (CVPR 2007).

A diagonal-covariance GMM (weights w_k, means mu_k, variances sigma_k^2) models the descriptors. An image's
T descriptors x_t, with posteriors gamma_t(k), give the normalised gradients (the paper's equations 7 and 8)

    G_mu_k    = 1 / (T sqrt(w_k))    sum_t gamma_t(k) (x_t - mu_k) / sigma_k
    G_sigma_k = 1 / (T sqrt(2 w_k))  sum_t gamma_t(k) [(x_t - mu_k)^2 / sigma_k^2 - 1]

concatenated (2 K D values; the weights' gradient carries little and the paper drops it), then the "improved"
normalisations: signed square root and L2. With a spatial pyramid each cell gets its own Fisher Vector,
normalised by the cell's descriptor count, as in the paper's section 3.3.

scikit-image's `fisher_vector` computes the same G_mu, G_sigma with the opposite sign, and prepends the
weights' gradient (tests/classical/encodings/test_fisher.py checks the correspondence). This implementation is
batched over images and pyramid cells: the sums over descriptors are matrix products.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from skimage.feature import learn_gmm

from ninshiki.classical.encodings.pooling import (
    ImageSize,
    cell_weights,
    check_descriptors,
    chunked,
    num_cells,
    pad_batch,
    power_l2,
)


@dataclass(frozen=True)
class DiagonalGMM:
    """A Gaussian mixture with diagonal covariances.

    Shape:
        weights (K,), means (K, D), variances (K, D), all float64.
    """

    weights: np.ndarray
    means: np.ndarray
    variances: np.ndarray

    def posteriors(self, x: np.ndarray) -> np.ndarray:
        """Soft assignments gamma(k) of each descriptor, by log-sum-exp over the components.

        Shape:
            x: (M, D) -> (M, K) float64, rows summing to 1.
        """
        x = np.asarray(x, np.float64)
        precision = 1.0 / self.variances                            # (K, D)
        # -2 log N(x; mu, sigma^2) without the x-independent terms, then with them, per component
        mahalanobis = (x * x) @ precision.T - 2 * x @ (self.means * precision).T   # (M, K)
        mahalanobis += (self.means**2 * precision).sum(axis=1)
        log_det = np.log(self.variances).sum(axis=1)                # (K,)
        log_p = np.log(self.weights) - 0.5 * (mahalanobis + log_det)   # (M, K), up to a constant shared by all k
        log_p -= log_p.max(axis=1, keepdims=True)
        p = np.exp(log_p)
        return p / p.sum(axis=1, keepdims=True)


def fit_gmm(descriptors: np.ndarray, k: int, *, seed: int = 0, max_iter: int = 100,
            reg_covar: float = 1e-6) -> DiagonalGMM:
    """Fit a diagonal GMM by EM (scikit-image's `learn_gmm`, i.e. scikit-learn's GaussianMixture, k-means init).

    Shape:
        - descriptors: (M, D) with M >= k.
        - Output: a `DiagonalGMM` with K = k components.
    """
    descriptors = np.asarray(descriptors, np.float64)
    if descriptors.ndim != 2 or len(descriptors) < k:
        raise ValueError(f"a GMM of {k} components needs at least {k} descriptors (M, D); got {descriptors.shape}")
    gmm = learn_gmm(descriptors, n_modes=int(k), gm_args={"covariance_type": "diag", "random_state": seed,
                                                           "max_iter": max_iter, "reg_covar": reg_covar})
    return DiagonalGMM(gmm.weights_.astype(np.float64), gmm.means_.astype(np.float64),
                       gmm.covariances_.astype(np.float64))


def fisher_gradients(x: np.ndarray, gmm: DiagonalGMM, where: np.ndarray) -> np.ndarray:
    """The paper's G_mu and G_sigma per image and cell, from the zeroth, first and second order statistics.

    Shape:
        - x: (n, M, D) padded descriptors; where: (n, M, C) cell weights, 0 on padding.
        - Output: (n, C, 2, K, D) float64: [:, :, 0] is G_mu, [:, :, 1] is G_sigma; zero for empty cells.
    """
    n, m, dim = x.shape
    k, cells = len(gmm.weights), where.shape[2]
    gamma = gmm.posteriors(x.reshape(n * m, dim)).reshape(n, m, 1, k)
    cell_gamma = (where[:, :, :, None] * gamma).reshape(n, m, cells * k).transpose(0, 2, 1)   # (n, C * K, M)
    s0 = cell_gamma.sum(axis=2).reshape(n, cells, k, 1)              # (n, C, K, 1)
    s1 = np.matmul(cell_gamma, x).reshape(n, cells, k, dim)          # (n, C, K, D)
    s2 = np.matmul(cell_gamma, x * x).reshape(n, cells, k, dim)      # (n, C, K, D)
    mu, var, w = gmm.means, gmm.variances, gmm.weights[:, None]      # (K, D), (K, D), (K, 1)
    count = np.maximum(where.sum(axis=1), 1)[:, :, None, None]      # (n, C, 1, 1): T per cell
    g_mu = (s1 - s0 * mu) / (np.sqrt(var) * np.sqrt(w) * count)
    g_sigma = ((s2 - 2 * mu * s1 + mu**2 * s0) / var - s0) / (np.sqrt(2 * w) * count)
    return np.stack([g_mu, g_sigma], axis=2)                         # (n, C, 2, K, D)


def fisher_encode(descriptors: Sequence[np.ndarray], gmm: DiagonalGMM, *, power: float = 0.5,
                  pyramid: Sequence[int] = (1,), xy: Sequence[np.ndarray] | None = None,
                  image_size: ImageSize | None = None, normalise: bool = True, chunk: int = 64,
                  progress: bool = False) -> np.ndarray:
    """Fisher Vectors of many images.

    Args:
        descriptors: per-image descriptors.
        gmm: the descriptors' model (`fit_gmm`).
        power: exponent of the signed power normalisation (0.5: square root; 1: none).
        pyramid, xy, image_size: optional spatial pyramid, as in `bof_encode`.
        normalise: False returns the gradients before power and L2 normalisation.
        chunk: images per batched product.
        progress: show a progress bar.

    Shape:
        - descriptors: N arrays (M_i, D); the GMM has K components.
        - Output: (N, C * 2 * K * D) float32, ordered by cell, then [G_mu, G_sigma], component, dimension.
    """
    check_descriptors(descriptors, gmm.means.shape[1], "fisher_encode")
    k, dim, cells = gmm.means.shape[0], gmm.means.shape[1], num_cells(pyramid)
    out = np.zeros((len(descriptors), cells * 2 * k * dim), np.float32)   # (N, C * 2 * K * D)
    for sl in chunked(len(descriptors), chunk, progress=progress, desc="Fisher"):
        x, mask = pad_batch(descriptors[sl])                         # (n, M, D), (n, M)
        where = cell_weights(None if xy is None else xy[sl], image_size, pyramid, mask)
        out[sl] = fisher_gradients(x, gmm, where).reshape(len(x), -1)
    return power_l2(out, power) if normalise else out
