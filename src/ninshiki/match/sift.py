"""SIFT and RootSIFT local features through OpenCV, behind the `FeatureExtractor` interface.

Lowe, "Distinctive Image Features from Scale-Invariant Keypoints" (IJCV 2004): difference-of-Gaussian
keypoints, a dominant gradient orientation each (a keypoint with several strong orientations is repeated
once per orientation), and a 4x4x8 histogram of gradients as descriptor. RootSIFT (Arandjelovic and
Zisserman, "Three things everyone should know to improve object retrieval", CVPR 2012) L1-normalises each
descriptor and takes the square root, so that Euclidean distance compares histograms by the Hellinger kernel.

The three stages are exposed as LIFT exposes them: `detect` (keypoints with their orientation; OpenCV's SIFT
assigns orientations while detecting), `describe` (descriptors at any given keypoints, e.g. another method's)
and `extract` (both in one pass). To describe given keypoints, OpenCV reads the scale-space level from the
keypoint's packed ``octave`` field; `describe` rebuilds that field from the scale, so that describing the
keypoints `detect` returns gives the descriptors `extract` gives.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from ninshiki.classical.sift import root_sift
from ninshiki.match.features import LocalFeatures

DESCRIPTOR_DIM = 128


class SiftExtractor:
    """SIFT or RootSIFT keypoints and descriptors (OpenCV's implementation).

    Args:
        max_features: keep at most this many keypoints, the strongest by DoG response; None keeps all.
        root: RootSIFT descriptors (unit L2 norm) instead of SIFT's (integers in 0..255).
        contrast_threshold: OpenCV's DoG contrast threshold (Lowe's 0.03, scaled by 3 / octave_layers).
        edge_threshold: largest principal-curvature ratio of an accepted keypoint (Lowe's r = 10).
        sigma: blur of the base of the scale space (Lowe's 1.6).
        octave_layers: scales sampled per octave (Lowe's s = 3).
    """

    descriptor_dim = DESCRIPTOR_DIM

    def __init__(self, *, max_features: int | None = 2000, root: bool = False, contrast_threshold: float = 0.04,
                 edge_threshold: float = 10.0, sigma: float = 1.6, octave_layers: int = 3) -> None:
        if max_features is not None and max_features < 1:
            raise ValueError(f"max_features must be at least 1 (or None for all), got {max_features}")
        if octave_layers < 1 or sigma <= 0:
            raise ValueError(f"need octave_layers >= 1 and sigma > 0, got {octave_layers} and {sigma}")
        self.max_features = max_features
        self.root = root
        self.contrast_threshold = contrast_threshold
        self.edge_threshold = edge_threshold
        self.sigma = sigma
        self.octave_layers = octave_layers

    @property
    def name(self) -> str:
        return "rootsift" if self.root else "sift"

    def config(self) -> dict[str, float | int | bool | None]:
        """The constructor keywords (JSON-able), to record which extractor built a database."""
        return {"max_features": self.max_features, "root": self.root, "contrast_threshold": self.contrast_threshold,
                "edge_threshold": self.edge_threshold, "sigma": self.sigma, "octave_layers": self.octave_layers}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"SiftExtractor({args})"

    def _sift(self) -> cv2.SIFT:
        # made per call: cheap, and keeps the extractor picklable (DataLoader workers) and thread-safe
        return cv2.SIFT_create(nfeatures=self.max_features or 0, nOctaveLayers=self.octave_layers,
                               contrastThreshold=self.contrast_threshold, edgeThreshold=self.edge_threshold,
                               sigma=self.sigma)

    def detect(self, gray: np.ndarray) -> LocalFeatures:
        """DoG keypoints with their dominant orientations, strongest first; no descriptors (D = 0).

        Shape:
            - gray: (H, W) uint8.
        """
        keypoints = self._sift().detect(_check_gray(gray), None)
        return _sorted(_to_features(keypoints, np.zeros((len(keypoints), 0), np.float32)))

    def describe(self, gray: np.ndarray, keypoints: LocalFeatures) -> LocalFeatures:
        """SIFT (or RootSIFT) descriptors at the given keypoints (position, scale and angle are kept).

        Shape:
            - gray: (H, W) uint8.
            - Output: the same N keypoints with (N, 128) float32 descriptors.
        """
        gray = _check_gray(gray)
        if len(keypoints) == 0:
            return LocalFeatures.empty(DESCRIPTOR_DIM)
        octaves = pack_octaves(keypoints.scale, sigma=self.sigma, octave_layers=self.octave_layers,
                               max_octave=_max_octave(gray.shape))
        cv_keypoints = [cv2.KeyPoint(float(x), float(y), float(s), float(a), float(r), int(o)) for (x, y), s, a, r, o
                        in zip(keypoints.xy, keypoints.scale, keypoints.angle, keypoints.response, octaves)]
        cv_keypoints, descriptors = self._sift().compute(gray, cv_keypoints)
        if descriptors is None or len(cv_keypoints) != len(keypoints):
            raise RuntimeError(f"OpenCV described {len(cv_keypoints)} of {len(keypoints)} keypoints")
        return LocalFeatures(keypoints.xy, keypoints.scale, keypoints.angle, keypoints.response,
                             self._finish(descriptors))

    def extract(self, gray: np.ndarray) -> LocalFeatures:
        """Keypoints and descriptors in one pass (OpenCV's detectAndCompute), strongest first.

        Shape:
            - gray: (H, W) uint8.
            - Output: N keypoints with (N, 128) float32 descriptors; N may be 0.
        """
        keypoints, descriptors = self._sift().detectAndCompute(_check_gray(gray), None)
        if not keypoints:
            return LocalFeatures.empty(DESCRIPTOR_DIM)
        return _sorted(_to_features(keypoints, self._finish(descriptors)))

    def _finish(self, descriptors: np.ndarray) -> np.ndarray:
        descriptors = np.asarray(descriptors, np.float32)   # (N, 128)
        return root_sift(descriptors) if self.root else descriptors


def pack_octaves(scale: np.ndarray, *, sigma: float = 1.6, octave_layers: int = 3, max_octave: int = 8) -> np.ndarray:
    """OpenCV's packed ``KeyPoint.octave`` (octave in the low byte, layer in the next) for keypoint sizes.

    A SIFT keypoint of octave o (-1 is the upsampled base) and layer l in 1..S has size
    2 sigma 2^(o + (l + xi) / S) with |xi| <= 0.5, so o and l follow from the size; other sizes get the
    nearest level OpenCV can describe from (o >= -1, l in 0..S + 2).

    Shape:
        - scale: (N,) sizes in pixels. Output: (N,) int64.
    """
    level = np.rint(octave_layers * np.log2(np.maximum(np.asarray(scale, np.float64), 1e-6) / (2 * sigma)))
    octave = np.clip(np.floor((level - 1) / octave_layers), -1, max_octave)          # (N,)
    layer = np.clip(level - octave * octave_layers, 0, octave_layers + 2)            # (N,)
    return ((octave.astype(np.int64) & 255) | (layer.astype(np.int64) << 8)).astype(np.int64)


def _max_octave(shape: tuple[int, ...]) -> int:
    # the top octave OpenCV builds: its pyramid has round(log2(min side)) octaves from -1 (the upsampled base)
    return max(0, round(math.log2(min(shape))) - 2)


def _check_gray(gray: np.ndarray) -> np.ndarray:
    if not isinstance(gray, np.ndarray) or gray.ndim != 2 or gray.dtype != np.uint8:
        raise ValueError(f"SIFT needs an (H, W) uint8 grayscale array, got {type(gray).__name__} "
                         f"{getattr(gray, 'dtype', '')} {getattr(gray, 'shape', '')}")
    return gray


def _to_features(keypoints: tuple[cv2.KeyPoint, ...], descriptors: np.ndarray) -> LocalFeatures:
    if not keypoints:
        return LocalFeatures.empty(descriptors.shape[1])
    xy = cv2.KeyPoint_convert(keypoints).reshape(-1, 2)                               # (N, 2)
    values = np.array([(k.size, k.angle % 360.0, k.response) for k in keypoints], np.float32)  # (N, 3)
    return LocalFeatures(xy, values[:, 0], values[:, 1], values[:, 2], descriptors)


def _sorted(features: LocalFeatures) -> LocalFeatures:
    order = np.argsort(-features.response, kind="stable")
    return features.subset(order)
