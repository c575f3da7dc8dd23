"""Bag-of-Features: histograms of visual words. Csurka, Dance, Fan, Willamowski and Bray, "Visual
categorization with bags of keypoints" (ECCV workshop 2004), with the kernel-codebook soft assignment of
van Gemert et al. (ECCV 2008) and the spatial pyramid of Lazebnik, Schmid and Ponce (CVPR 2006).

Normalisation: each pyramid level's histograms are divided by the image's descriptor count (an L1
normalisation of the level: every descriptor lies in one cell per level, with weights summing to 1), then the
whole vector gets a square root and L2 normalisation. The square root turns the linear SVM's dot product into
the Hellinger (Bhattacharyya) kernel, which suits histograms far better than the linear kernel (Perronnin et
al., CVPR 2010; Vedaldi and Zisserman, "Efficient additive kernels via explicit feature maps", 2012).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ninshiki.classical.encodings.codebook import hard_assign, soft_assign
from ninshiki.classical.encodings.pooling import (
    ImageSize,
    cell_weights,
    check_descriptors,
    chunked,
    num_cells,
    pad_batch,
    power_l2,
)


def word_weights(x: np.ndarray, centres: np.ndarray, *, soft: bool = False, sigma: float | None = None) -> np.ndarray:
    """Each descriptor's weight on each visual word: one-hot (hard) or kernel-codebook (soft).

    Shape:
        x: (M, D), centres: (K, D) -> (M, K) float64, rows summing to 1.
    """
    if soft:
        if sigma is None:
            raise ValueError("soft assignment needs sigma (codebook_sigma(descriptors, centres) estimates one)")
        return soft_assign(x, centres, sigma)
    weights = np.zeros((len(x), len(centres)))                       # (M, K)
    weights[np.arange(len(x)), hard_assign(x, centres)] = 1
    return weights


def bof_encode(descriptors: Sequence[np.ndarray], centres: np.ndarray, *, soft: bool = False,
               sigma: float | None = None, pyramid: Sequence[int] = (1,),
               xy: Sequence[np.ndarray] | None = None, image_size: ImageSize | None = None,
               normalise: bool = True, power: float = 0.5, chunk: int = 128, progress: bool = False) -> np.ndarray:
    """Bag-of-Features histograms of many images, concatenated over the cells of a spatial pyramid.

    Args:
        descriptors: per-image descriptors.
        centres: the codebook (`fit_codebook`).
        soft: kernel-codebook soft assignment with width `sigma` instead of nearest-centre counts.
        pyramid: grid sizes of the levels: (1,) is the plain histogram, (1, 2) adds the four quadrants.
        xy, image_size: descriptor positions (x, y) and (H, W) of the images; needed for a pyramid.
        normalise: False returns the raw (weighted) counts, before any normalisation.
        power: exponent of the signed power normalisation (0.5: square root; 1: none).
        chunk: images per batched product.
        progress: show a progress bar.

    Returns:
        Histograms, cell by cell (level by level, cells row by row), K words per cell.

    Shape:
        - descriptors: N arrays (M_i, D); centres: (K, D); xy: N arrays (M_i, 2).
        - Output: (N, C * K) float32, C = sum(g * g for g in pyramid).
    """
    check_descriptors(descriptors, centres.shape[1], "bof_encode")
    cells, k = num_cells(pyramid), len(centres)
    out = np.zeros((len(descriptors), cells * k), np.float32)        # (N, C * K)
    for sl in chunked(len(descriptors), chunk, progress=progress, desc="BoF"):
        x, mask = pad_batch(descriptors[sl], np.float32)             # (n, M, D), (n, M)
        n, m, dim = x.shape
        where = cell_weights(None if xy is None else xy[sl], image_size, pyramid, mask.astype(np.float64))
        if soft:
            words = word_weights(x.reshape(n * m, dim), centres, soft=True, sigma=sigma).reshape(n, m, k)
            hist = np.matmul(where.transpose(0, 2, 1), words)        # (n, C, K)
        else:   # count (image, cell, word) triples: no one-hot (n, M, K) array
            nearest = hard_assign(x.reshape(n * m, dim), centres).reshape(n, m)
            image, row, cell = np.nonzero(where)
            flat = (image * cells + cell) * k + nearest[image, row]
            hist = np.bincount(flat, weights=where[image, row, cell], minlength=n * cells * k).reshape(n, cells, k)
        if normalise:
            hist /= np.maximum(mask.sum(axis=1), 1)[:, None, None]  # each level now sums to 1 (or 0: no descriptor)
        out[sl] = hist.reshape(n, cells * k)
    return power_l2(out, power) if normalise else out
