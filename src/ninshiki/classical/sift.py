"""SIFT descriptors through OpenCV: Lowe, "Distinctive Image Features from Scale-Invariant Keypoints"
(IJCV 2004), computed on a dense grid (as Bag-of-Features, VLAD and Fisher Vector classifiers use them) or at
detected keypoints; RootSIFT from Arandjelovic and Zisserman, "Three things everyone should know to improve
object retrieval" (CVPR 2012).

Geometry of OpenCV's descriptor at a keypoint of diameter `kp.size`: sigma = kp.size / 2, each of the 4x4
spatial bins is 3 sigma wide, so the descriptor spans 6 * kp.size pixels. Here `size` is the bin width in
input pixels (VLFeat's `dsift` convention), hence kp.size = size / 1.5. Given keypoints, OpenCV computes the
descriptor on the base of its scale space, the image smoothed to sigma 1.6 pixels whatever the keypoint size.
On a 28x28 Fashion-MNIST image that smoothing blurs the 1-2 pixel details (seams, straps, logos) away, so
such small images are upscaled first: at `upscale=2` the same smoothing is 0.8 input pixels.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
from tqdm import tqdm

DESCRIPTOR_DIM = 128
_OPENCV_BIN_PER_SIZE = 1.5   # a bin is 3 sigma wide and sigma = kp.size / 2


def grid_points(height: int, width: int, *, step: float) -> np.ndarray:
    """Centres of a dense grid with spacing `step`, centred in a `height` x `width` image.

    Shape:
        Output: (N, 2) float32 (x, y) pixel centres, N = ceil(width / step) * ceil(height / step) rows.
    """
    if step <= 0:
        raise ValueError(f"step must be positive; got {step}")
    xs = _centred(width, step)
    ys = _centred(height, step)
    gx, gy = np.meshgrid(xs, ys)                                     # (ny, nx) each
    return np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)   # (N, 2)


def _centred(length: int, step: float) -> np.ndarray:
    count = max(1, math.ceil(length / step))
    offset = ((length - 1) - (count - 1) * step) / 2
    return offset + step * np.arange(count)                          # (count,)


def _upscaled(gray: np.ndarray, upscale: float) -> np.ndarray:
    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise ValueError(f"SIFT needs a 2-D uint8 grayscale image; got {gray.dtype} of shape {gray.shape}")
    if upscale <= 0:
        raise ValueError(f"upscale must be positive; got {upscale}")
    if upscale == 1:
        return gray
    return cv2.resize(gray, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_LINEAR)


def _sift() -> cv2.SIFT:
    return cv2.SIFT_create()


def dense_sift(gray: np.ndarray, *, step: float, size: float, upscale: float = 1.0,
               extractor: cv2.SIFT | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Upright SIFT descriptors on a dense grid.

    Args:
        gray: the image, uint8.
        step: grid spacing in input pixels.
        size: width of one of the descriptor's 4x4 spatial bins in input pixels (it spans 4 * size).
        upscale: resize factor applied first (bilinear); step and size stay in input pixels.
        extractor: a `cv2.SIFT` to reuse (one per thread); a new one if None.

    Returns:
        descriptors: OpenCV's SIFT, integer values in [0, 255] (L2-normalised, clipped at 0.2, times 512).
        xy: the grid centres in input pixels.

    Shape:
        - gray: (H, W) uint8.
        - Output: descriptors (N, 128) float32, xy (N, 2) float32, N = len(grid_points(H, W, step=step)).
    """
    image = _upscaled(gray, upscale)
    xy = grid_points(*gray.shape, step=step)                         # (N, 2)
    scaled = (xy + 0.5) * upscale - 0.5                              # pixel centres in the upscaled image
    kp_size = size * upscale / _OPENCV_BIN_PER_SIZE
    # angle 0, not KeyPoint's default -1 (OpenCV would rotate the descriptor by 361 degrees).
    keypoints = [cv2.KeyPoint(float(x), float(y), kp_size, 0.0) for x, y in scaled]
    keypoints, descriptors = (extractor or _sift()).compute(image, keypoints)
    if descriptors is None or len(keypoints) != len(xy):
        raise RuntimeError(f"OpenCV returned {len(keypoints)} SIFT descriptors for {len(xy)} grid points")
    return descriptors.astype(np.float32, copy=False), xy


def keypoint_sift(gray: np.ndarray, *, max_features: int, upscale: float = 1.0,
                  extractor: cv2.SIFT | None = None) -> tuple[np.ndarray, np.ndarray]:
    """SIFT at the (at most `max_features` strongest) difference-of-Gaussian keypoints, with their orientation.

    Shape:
        - gray: (H, W) uint8.
        - Output: descriptors (N, 128) float32 and xy (N, 2) float32 in input pixels; N may be 0.
    """
    if max_features < 1:
        raise ValueError(f"max_features must be at least 1; got {max_features}")
    image = _upscaled(gray, upscale)
    sift = extractor or _sift()
    keypoints = sift.detect(image, None)
    # retain the strongest ourselves: nfeatures is fixed at construction, and this keeps one extractor per call site
    keypoints = sorted(keypoints, key=lambda k: -k.response)[:max_features]
    if not keypoints:
        return np.zeros((0, DESCRIPTOR_DIM), np.float32), np.zeros((0, 2), np.float32)
    keypoints, descriptors = sift.compute(image, keypoints)
    xy = (np.array([k.pt for k in keypoints], np.float32) + 0.5) / upscale - 0.5   # (N, 2)
    return descriptors.astype(np.float32, copy=False), xy


def root_sift(descriptors: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """RootSIFT: L1-normalise each descriptor, then take the square root, so that Euclidean distances
    between RootSIFT vectors are Hellinger distances between the SIFT histograms.

    All-zero descriptors (flat patches) stay zero.

    Shape:
        descriptors: (N, D) non-negative -> (N, D) float32 with unit L2 norm (or zero).
    """
    descriptors = np.asarray(descriptors, dtype=np.float32)
    l1 = descriptors.sum(axis=1, keepdims=True)                      # (N, 1)
    return np.sqrt(descriptors / np.maximum(l1, eps))


def to_gray(images: np.ndarray) -> np.ndarray:
    """Grayscale uint8 images from (N, 1 or 3, H, W) uint8, with OpenCV's weights (0.299, 0.587, 0.114).

    Shape:
        images: (N, C, H, W) uint8 with C in {1, 3} -> (N, H, W) uint8.
    """
    if images.ndim != 4 or images.shape[1] not in (1, 3) or images.dtype != np.uint8:
        raise ValueError(f"expected (N, 1 or 3, H, W) uint8 images; got {images.dtype} of shape {images.shape}")
    if images.shape[1] == 1:
        return images[:, 0]
    weights = np.array([0.299, 0.587, 0.114], np.float32)
    gray = np.einsum("nchw,c->nhw", images.astype(np.float32), weights)   # (N, H, W)
    return np.clip(np.rint(gray), 0, 255).astype(np.uint8)


def extract_sift(images: np.ndarray, *, step: float = 2.0, size: float = 2.0, upscale: float = 1.0,
                 max_features: int | None = None, root: bool = False,
                 progress: bool = False) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """SIFT (or RootSIFT) descriptors of many grayscale images: dense unless `max_features` is given.

    Returns:
        One descriptor array and one xy array per image.

    Shape:
        - images: (N, H, W) uint8.
        - Output: lists of N arrays, descriptors (M_i, 128) float32 and xy (M_i, 2) float32 in input pixels.
    """
    if images.ndim != 3:
        raise ValueError(f"expected (N, H, W) grayscale images; got shape {images.shape}")
    sift = _sift()
    descriptors, positions = [], []
    for gray in tqdm(images, desc="SIFT", unit="img", disable=not progress, leave=False):
        if max_features is None:
            desc, xy = dense_sift(gray, step=step, size=size, upscale=upscale, extractor=sift)
        else:
            desc, xy = keypoint_sift(gray, max_features=max_features, upscale=upscale, extractor=sift)
        descriptors.append(root_sift(desc) if root else desc)
        positions.append(xy)
    return descriptors, positions
