"""The shared pipeline of the encoded-SIFT classifiers: SIFT -> RootSIFT -> PCA -> codebook or GMM ->
Bag-of-Features, VLAD or Fisher Vector -> linear SVM.

`fit` runs in two passes over the training images: SIFT of a random sample of them fits the PCA and the
codebook (or GMM); then every image is described and encoded in chunks, so only the encodings, never all the
descriptors, are held in memory; a one-vs-rest linear SVM (scikit-learn's LinearSVC, squared hinge loss)
learns on the encodings. Everything learned is a buffer (`set_state`), so a weights file restores the model.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.svm import LinearSVC
from torch import Tensor
from tqdm import tqdm

from ninshiki.classical.base import ClassicalClassifier
from ninshiki.classical.encodings import (
    DiagonalGMM,
    bof_encode,
    codebook_sigma,
    fisher_encode,
    fit_codebook,
    fit_gmm,
    fit_pca,
    num_cells,
    pca_project,
    vlad_encode,
)
from ninshiki.classical.sift import extract_sift, to_gray

ENCODINGS = ("bof", "vlad", "fisher")
_ABSENT_CLASS_SCORE = -1e4   # classes missing from the training labels: a score no SVM output comes near
# Kernel width of soft BoF, as a fraction of the RMS distance to the nearest centre. On Fashion-MNIST (5k train,
# 2k test, k=256, pyramid (1, 2)): 1.0 -> 0.84 (too smooth), 0.5 -> 0.889, 0.25 -> 0.886; hard assignment 0.876.
_SOFT_SIGMA_FRACTION = 0.5


@dataclass(frozen=True)
class EncodedSiftConfig:
    """Hyper-parameters of an encoded-SIFT classifier (the factories' keywords).

    Attributes:
        encoding: "bof", "vlad" or "fisher".
        step, size: dense grid spacing and SIFT bin width, in input pixels (see `ninshiki.classical.sift`).
        upscale: resize factor applied before SIFT (small images need it: see `ninshiki.classical.sift`).
        max_features: detect up to this many DoG keypoints per image instead of the dense grid.
        root_sift: RootSIFT (Hellinger) instead of raw SIFT.
        pca_dim: PCA dimensions of the descriptors; 0 keeps the 128.
        k: codebook size (BoF, VLAD) or number of GMM components (Fisher Vector).
        pyramid: spatial pyramid grid sizes, e.g. (1,) or (1, 2).
        soft: kernel-codebook soft assignment (BoF only).
        C: the linear SVM's regularisation constant.
        max_descriptors: size of the random descriptor sample the PCA and codebook / GMM are fit on.
        seed: seeds the sampling, k-means, EM and the SVM.
    """

    encoding: str
    step: float
    size: float
    upscale: float
    max_features: int | None
    root_sift: bool
    pca_dim: int
    k: int
    pyramid: tuple[int, ...]
    soft: bool
    C: float
    max_descriptors: int
    seed: int

    def __post_init__(self) -> None:
        if self.encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}; got {self.encoding!r}")
        if self.soft and self.encoding != "bof":
            raise ValueError("soft assignment is a Bag-of-Features option (VLAD and Fisher have their own)")
        if self.k < 1 or self.pca_dim < 0 or self.C <= 0 or self.max_descriptors < self.k:
            raise ValueError(f"need k >= 1, pca_dim >= 0, C > 0 and max_descriptors >= k; got {self}")
        num_cells(self.pyramid)   # raises on a malformed pyramid


class EncodedSiftClassifier(ClassicalClassifier):
    """Dense (or keypoint) SIFT encoded by BoF, VLAD or Fisher Vector, classified by a linear SVM.

    Shape:
        - fit: images (N, C, H, W) uint8, labels (N,) int64 in [0, num_classes).
        - forward: x (B, C, H, W) float in [0, 1] -> (B, num_classes) float32 SVM decision values.
    """

    def __init__(self, *, num_classes: int, in_channels: int, config: EncodedSiftConfig) -> None:
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 (grayscale) or 3 (RGB); got {in_channels}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2; got {num_classes}")
        self.num_classes, self.in_channels, self.config = num_classes, in_channels, config

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, in_channels={self.in_channels}, {self.config}"

    # --- descriptors and encodings ---------------------------------------------------------------

    def _array(self, name: str) -> np.ndarray:
        return self.state(name).detach().cpu().numpy()

    def _descriptors(self, gray: np.ndarray, progress: bool = False) -> tuple[list[np.ndarray], list[np.ndarray]]:
        cfg = self.config
        desc, xy = extract_sift(gray, step=cfg.step, size=cfg.size, upscale=cfg.upscale,
                                max_features=cfg.max_features, root=cfg.root_sift, progress=progress)
        if cfg.pca_dim and "pca_mean" in self._buffers:
            mean, components = self._array("pca_mean"), self._array("pca_components")
            desc = [pca_project(d, mean, components) for d in desc]
        return desc, xy

    def _encode(self, gray: np.ndarray) -> np.ndarray:
        """Encodings of (n, H, W) uint8 images -> (n, F) float32."""
        cfg = self.config
        desc, xy = self._descriptors(gray)
        where = {"pyramid": cfg.pyramid, "xy": xy, "image_size": gray.shape[1:]}
        if cfg.encoding == "bof":
            sigma = float(self._array("bof_sigma")[0]) if cfg.soft else None
            return bof_encode(desc, self._array("codebook"), soft=cfg.soft, sigma=sigma, **where)
        if cfg.encoding == "vlad":
            return vlad_encode(desc, self._array("codebook"), **where)
        gmm = DiagonalGMM(*(self._array(f"gmm_{n}") for n in ("weights", "means", "variances")))
        return fisher_encode(desc, gmm, **where)

    def _encode_all(self, gray: np.ndarray, progress: bool, chunk: int = 256) -> np.ndarray:
        parts = []
        with tqdm(total=len(gray), desc=f"{self.config.encoding} encodings", unit="img", disable=not progress) as bar:
            for start in range(0, len(gray), chunk):
                parts.append(self._encode(gray[start: start + chunk]))
                bar.update(len(parts[-1]))
        return np.concatenate(parts)                                 # (N, F)

    # --- fitting ---------------------------------------------------------------------------------

    def _sample(self, gray: np.ndarray, progress: bool) -> np.ndarray:
        """A random sample of at most `max_descriptors` (Root)SIFT descriptors of the training images, (S, 128)."""
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        first, _ = self._descriptors(gray[:1])
        per_image = max(1, len(first[0]) if cfg.max_features is None else cfg.max_features)
        # twice the images strictly needed, so the sample mixes descriptors of many images
        count = min(len(gray), math.ceil(2 * cfg.max_descriptors / per_image))
        chosen = np.sort(rng.choice(len(gray), count, replace=False))
        desc, _ = self._descriptors(gray[chosen], progress=progress)
        pool = np.concatenate(desc)                                  # (S', 128)
        if len(pool) > cfg.max_descriptors:
            pool = pool[rng.choice(len(pool), cfg.max_descriptors, replace=False)]
        return pool

    def _fit_vocabulary(self, sample: np.ndarray) -> None:
        cfg = self.config
        if cfg.pca_dim:
            mean, components = fit_pca(sample, cfg.pca_dim, seed=cfg.seed)
            self.set_state("pca_mean", mean)
            self.set_state("pca_components", components)
            sample = pca_project(sample, mean, components)           # (S, pca_dim)
        if cfg.encoding == "fisher":
            gmm = fit_gmm(sample, cfg.k, seed=cfg.seed)
            for name in ("weights", "means", "variances"):
                self.set_state(f"gmm_{name}", getattr(gmm, name))
            return
        centres = fit_codebook(sample, cfg.k, seed=cfg.seed)
        self.set_state("codebook", centres)
        if cfg.soft:
            sigma = _SOFT_SIGMA_FRACTION * codebook_sigma(sample, centres)
            self.set_state("bof_sigma", np.array([sigma], np.float64))   # (1,): set_state stores arrays at least 1-d

    def _fit_svm(self, features: np.ndarray, labels: np.ndarray) -> None:
        svm = LinearSVC(C=self.config.C, dual="auto", random_state=self.config.seed, max_iter=5000)
        svm.fit(features, labels)
        coef = np.zeros((self.num_classes, features.shape[1]), np.float32)   # (K, F)
        intercept = np.full(self.num_classes, _ABSENT_CLASS_SCORE, np.float32)   # (K,)
        present = svm.classes_.astype(np.int64)
        if len(present) == 2:   # scikit-learn keeps one hyperplane for two classes: +w for the second
            coef[present[1]], intercept[present[1]] = svm.coef_[0], svm.intercept_[0]
            coef[present[0]], intercept[present[0]] = -svm.coef_[0], -svm.intercept_[0]
        else:
            coef[present], intercept[present] = svm.coef_, svm.intercept_
        self.set_state("svm_coef", coef)
        self.set_state("svm_intercept", intercept)

    def fit(self, images: Tensor, labels: Tensor, *, progress: bool = True) -> dict[str, float]:
        """Fit PCA, codebook or GMM, and the SVM. Returns timings and the encoding's dimension."""
        images_np, labels_np = _check_training_set(images, labels, self.in_channels, self.num_classes)
        for name in list(self._buffers):   # refitting starts from scratch
            del self._buffers[name]
        start = time.perf_counter()
        gray = to_gray(images_np)                                    # (N, H, W)
        self._fit_vocabulary(self._sample(gray, progress))
        vocabulary_s = time.perf_counter() - start
        features = self._encode_all(gray, progress)                  # (N, F)
        encode_s = time.perf_counter() - start - vocabulary_s
        self._fit_svm(features, labels_np)
        return {"vocabulary_s": vocabulary_s, "encode_s": encode_s,
                "svm_s": time.perf_counter() - start - vocabulary_s - encode_s,
                "encoding_dim": float(features.shape[1])}

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__} expects (B, {self.in_channels}, H, W) images; got {tuple(x.shape)}")
        coef, intercept = self.state("svm_coef"), self.state("svm_intercept")
        pixels = (x.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()   # (B, C, H, W)
        features = torch.from_numpy(self._encode(to_gray(pixels)))  # (B, F)
        scores = features @ coef.cpu().T + intercept.cpu()          # (B, K)
        return scores.to(x.device)


def _check_training_set(images: Tensor, labels: Tensor, channels: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != channels:
        raise ValueError(f"fit expects (N, {channels}, H, W) uint8 images; got {images.dtype} {tuple(images.shape)}")
    if labels.shape != (len(images),):
        raise ValueError(f"fit expects one label per image: {len(images)} images, labels of shape {tuple(labels.shape)}")
    labels_np = labels.cpu().numpy().astype(np.int64)
    if len(labels_np) and (labels_np.min() < 0 or labels_np.max() >= classes):
        raise ValueError(f"labels must lie in [0, {classes}); got {labels_np.min()}..{labels_np.max()}")
    if len(np.unique(labels_np)) < 2:
        raise ValueError("fit needs images of at least two classes")
    return images.cpu().numpy(), labels_np
