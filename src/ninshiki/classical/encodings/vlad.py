"""VLAD, the Vector of Locally Aggregated Descriptors: Jegou, Douze, Schmid and Perez, "Aggregating local
descriptors into a compact image representation" (CVPR 2010), with the intra-normalisation of Arandjelovic and
Zisserman, "All about VLAD" (CVPR 2013).

Each descriptor is assigned to its nearest codebook centre c_k; block k of the image's VLAD is the sum of the
residuals x - c_k of the descriptors assigned to it. Normalisation, in this order: intra-normalisation (each
block L2-normalised on its own, so a few bursty blocks cannot dominate), signed square root (Jegou et al.,
TPAMI 2012), then L2 over the whole vector. With a spatial pyramid each cell gets its own K blocks.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ninshiki.classical.encodings.bof import word_weights
from ninshiki.classical.encodings.pooling import (
    ImageSize,
    cell_weights,
    check_descriptors,
    chunked,
    num_cells,
    pad_batch,
    power_l2,
)


def vlad_residual_sums(x: np.ndarray, centres: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Sums of residuals to the nearest centre per image, cell and centre, as sum(x) - count * c_k.

    Shape:
        - x: (n, M, D) padded descriptors; centres: (K, D); where: (n, M, C) cell weights, 0 on padding.
        - Output: (n, C, K, D) float64.
    """
    n, m, dim = x.shape
    k, cells = len(centres), where.shape[2]
    words = word_weights(x.reshape(n * m, dim), centres).reshape(n, m, 1, k)
    cell_words = (where[:, :, :, None] * words).reshape(n, m, cells * k)   # (n, M, C * K)
    sums = np.matmul(cell_words.transpose(0, 2, 1), x)              # (n, C * K, D)
    counts = cell_words.sum(axis=1)                                  # (n, C * K)
    residuals = sums.reshape(n, cells, k, dim) - counts.reshape(n, cells, k, 1) * centres[None, None]
    return residuals                                                 # (n, C, K, D)


def vlad_encode(descriptors: Sequence[np.ndarray], centres: np.ndarray, *, intra: bool = True,
                power: float = 0.5, pyramid: Sequence[int] = (1,), xy: Sequence[np.ndarray] | None = None,
                image_size: ImageSize | None = None, normalise: bool = True, chunk: int = 64,
                progress: bool = False) -> np.ndarray:
    """VLAD of many images.

    Args:
        descriptors: per-image descriptors.
        centres: the codebook (`fit_codebook`).
        intra: L2-normalise each (cell, centre) block before the power and global normalisations.
        power: exponent of the signed power normalisation (0.5: square root; 1: none).
        pyramid, xy, image_size: optional spatial pyramid, as in `bof_encode`.
        normalise: False returns the raw residual sums.
        chunk: images per batched product.
        progress: show a progress bar.

    Shape:
        - descriptors: N arrays (M_i, D); centres: (K, D).
        - Output: (N, C * K * D) float32, blocks ordered by cell, then centre, then dimension.
    """
    check_descriptors(descriptors, centres.shape[1], "vlad_encode")
    centres = np.asarray(centres, np.float64)
    k, dim, cells = centres.shape[0], centres.shape[1], num_cells(pyramid)
    out = np.zeros((len(descriptors), cells * k * dim), np.float32)  # (N, C * K * D)
    for sl in chunked(len(descriptors), chunk, progress=progress, desc="VLAD"):
        x, mask = pad_batch(descriptors[sl])                         # (n, M, D), (n, M)
        where = cell_weights(None if xy is None else xy[sl], image_size, pyramid, mask)
        v = vlad_residual_sums(x, centres, where)              # (n, C, K, D)
        if normalise and intra:
            v /= np.maximum(np.linalg.norm(v, axis=3, keepdims=True), 1e-12)
        out[sl] = v.reshape(len(x), -1)
    return power_l2(out, power) if normalise else out
