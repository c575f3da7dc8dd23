"""Visual codebooks: k-means centres of local descriptors, and assigning descriptors to them.

Hard assignment picks the nearest centre (Sivic and Zisserman, "Video Google", ICCV 2003; Csurka et al.,
"Visual categorization with bags of keypoints", 2004). Soft assignment is the kernel codebook of van Gemert
et al., "Kernel Codebooks for Scene Categorization" (ECCV 2008): weights exp(-d^2 / (2 sigma^2)) over all
centres, normalised to sum to 1 per descriptor.
"""
from __future__ import annotations

import numpy as np
from sklearn.cluster import MiniBatchKMeans


def fit_codebook(descriptors: np.ndarray, k: int, *, seed: int = 0, batch_size: int = 4096,
                 n_init: int = 3) -> np.ndarray:
    """K-means centres of a sample of descriptors (scikit-learn's MiniBatchKMeans, k-means++ seeding).

    Mini-batches keep this to seconds on 10^5 descriptors where Lloyd's iterations take minutes on a CPU;
    the best of `n_init` seedings (lowest inertia) is kept.

    Shape:
        - descriptors: (M, D) with M >= k.
        - Output: (k, D) float32 centres.
    """
    descriptors = np.asarray(descriptors, np.float32)
    if descriptors.ndim != 2 or len(descriptors) < k:
        raise ValueError(f"a codebook of {k} centres needs at least {k} descriptors (M, D); got {descriptors.shape}")
    kmeans = MiniBatchKMeans(n_clusters=k, random_state=seed, batch_size=batch_size, n_init=n_init,
                             max_no_improvement=20)
    kmeans.fit(descriptors)
    return kmeans.cluster_centers_.astype(np.float32)


def squared_distances(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances by |x|^2 - 2 x.c + |c|^2 (one matrix product), clipped at 0.

    Shape:
        x: (M, D), centres: (K, D) -> (M, K) of x's dtype promoted with the centres'.
    """
    cross = x @ centres.T                                            # (M, K)
    d2 = (x * x).sum(axis=1, keepdims=True) - 2 * cross + (centres * centres).sum(axis=1)[None, :]
    return np.maximum(d2, 0)


def hard_assign(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest centre of each descriptor (ties go to the lowest index).

    Shape:
        x: (M, D), centres: (K, D) -> (M,) int64.
    """
    # |x|^2 is the same for every centre, so it does not change the argmin
    scores = (centres * centres).sum(axis=1)[None, :] - 2 * (x @ centres.T)   # (M, K)
    return scores.argmin(axis=1)


def soft_assign(x: np.ndarray, centres: np.ndarray, sigma: float) -> np.ndarray:
    """Kernel-codebook weights exp(-d^2 / (2 sigma^2)) normalised over centres; each row sums to 1.

    Shape:
        x: (M, D), centres: (K, D) -> (M, K) float64.
    """
    if not sigma > 0:
        raise ValueError(f"soft assignment needs sigma > 0; got {sigma}")
    d2 = squared_distances(np.asarray(x, np.float64), np.asarray(centres, np.float64))   # (M, K)
    logits = -(d2 - d2.min(axis=1, keepdims=True)) / (2 * sigma**2)  # shift by the nearest: no underflow to 0/0
    weights = np.exp(logits)
    return weights / weights.sum(axis=1, keepdims=True)


def codebook_sigma(descriptors: np.ndarray, centres: np.ndarray) -> float:
    """A kernel width for soft assignment: the RMS distance of descriptors to their nearest centre.

    Shape:
        descriptors: (M, D), centres: (K, D) -> scalar.
    """
    d2 = squared_distances(np.asarray(descriptors, np.float64), np.asarray(centres, np.float64))   # (M, K)
    return float(np.sqrt(max(d2.min(axis=1).mean(), 1e-12)))
