"""Encodings of an image's local descriptors into one vector for a linear classifier: Bag-of-Features, VLAD
and Fisher Vector, with the PCA, codebooks and GMMs they are built on."""
from ninshiki.classical.encodings.bof import bof_encode, word_weights
from ninshiki.classical.encodings.codebook import (
                                                   codebook_sigma,
                                                   fit_codebook,
                                                   hard_assign,
                                                   soft_assign,
                                                   squared_distances,
)
from ninshiki.classical.encodings.fisher import DiagonalGMM, fisher_encode, fisher_gradients, fit_gmm
from ninshiki.classical.encodings.pca import fit_pca, pca_project
from ninshiki.classical.encodings.pooling import num_cells, pad_batch, power_l2, pyramid_cells
from ninshiki.classical.encodings.vlad import vlad_encode, vlad_residual_sums

__all__ = ["DiagonalGMM", "bof_encode", "codebook_sigma", "fisher_encode", "fisher_gradients", "fit_codebook",
           "fit_gmm", "fit_pca", "hard_assign", "num_cells", "pad_batch", "pca_project", "power_l2",
           "pyramid_cells", "soft_assign", "squared_distances", "vlad_encode", "vlad_residual_sums", "word_weights"]
