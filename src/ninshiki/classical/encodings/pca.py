"""PCA of local descriptors before encoding, as in Perronnin et al. (ECCV 2010) and Jegou et al. (CVPR 2010):
it decorrelates the dimensions (which a diagonal-covariance GMM assumes) and shrinks the encodings, whose size
grows with the descriptor dimension (VLAD: K * D, Fisher Vector: 2 * K * D).
"""
from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA


def fit_pca(descriptors: np.ndarray, dim: int, *, whiten: bool = False, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Principal axes of a sample of descriptors (scikit-learn's PCA).

    Args:
        descriptors: the sample.
        dim: number of components kept, at most min(M, D).
        whiten: divide each component by its standard deviation (folded into the returned matrix).
        seed: for the randomised solver scikit-learn may pick on large samples.

    Returns:
        mean and projection matrix; `pca_project` applies them.

    Shape:
        - descriptors: (M, D).
        - Output: mean (D,) float32, components (dim, D) float32.
    """
    descriptors = np.asarray(descriptors, np.float32)
    if descriptors.ndim != 2 or not 1 <= dim <= min(descriptors.shape):
        raise ValueError(f"PCA to {dim} dimensions needs at least {dim} descriptors of at least {dim} "
                         f"dimensions; got {descriptors.shape}")
    pca = PCA(n_components=dim, whiten=False, random_state=seed).fit(descriptors)
    components = pca.components_                                    # (dim, D)
    if whiten:
        components = components / np.sqrt(np.maximum(pca.explained_variance_, 1e-12))[:, None]
    return pca.mean_.astype(np.float32), components.astype(np.float32)


def pca_project(descriptors: np.ndarray, mean: np.ndarray, components: np.ndarray) -> np.ndarray:
    """(x - mean) @ components.T.

    Shape:
        descriptors: (M, D), mean: (D,), components: (d, D) -> (M, d) float32.
    """
    return ((np.asarray(descriptors, np.float32) - mean) @ components.T).astype(np.float32, copy=False)
