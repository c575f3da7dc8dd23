"""Local features: keypoints (position, scale, orientation, strength) with one descriptor each, and the
interface every extractor implements.

Specific-object recognition needs only this from an extractor, whatever its detector, orientation estimator
and descriptor are: SIFT (Lowe, IJCV 2004) through OpenCV, RootSIFT, or the learned LIFT pipeline (Yi et al.,
"LIFT: Learned Invariant Feature Transform", ECCV 2016). Matching, Hough voting and geometric verification
read positions, scales and angles in one convention, fixed here:

- ``xy``: pixel coordinates with the centre of the top-left pixel at (0, 0) (OpenCV's convention), x right,
  y down.
- ``scale``: the diameter of the keypoint's support in pixels, OpenCV's ``KeyPoint.size`` (for SIFT, twice
  the Gaussian sigma at which the keypoint was found). Only ratios of scales are used downstream.
- ``angle``: orientation in degrees in [0, 360). Rotating an image content by +a degrees in the image's own
  (x right, y down) frame, i.e. by the matrix [[cos a, -sin a], [sin a, cos a]], adds a to the angles of its
  keypoints (as OpenCV's SIFT measures them).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from ninshiki.data.images import read_image, to_channels

ImageLike = np.ndarray | torch.Tensor | str | os.PathLike


@dataclass(frozen=True)
class LocalFeatures:
    """Keypoints and their descriptors, one row each.

    Shape:
        - xy: (N, 2) float32 pixel coordinates (x, y).
        - scale: (N,) float32 support diameter in pixels.
        - angle: (N,) float32 orientation in degrees, [0, 360).
        - response: (N,) float32 detector strength (larger is stronger).
        - descriptors: (N, D) float32; D = 0 for keypoints that are not described yet.
    """

    xy: np.ndarray
    scale: np.ndarray
    angle: np.ndarray
    response: np.ndarray
    descriptors: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.xy)
        for name, ndim in (("xy", 2), ("scale", 1), ("angle", 1), ("response", 1), ("descriptors", 2)):
            value = np.ascontiguousarray(getattr(self, name), dtype=np.float32)
            if value.ndim != ndim or len(value) != n or (name == "xy" and value.shape[1] != 2):
                raise ValueError(f"LocalFeatures.{name}: expected {ndim}-D with {n} rows"
                                 f"{' and 2 columns' if name == 'xy' else ''}, got shape {value.shape}")
            object.__setattr__(self, name, value)   # frozen: normalise dtype once, here

    def __len__(self) -> int:
        return len(self.xy)

    @property
    def dim(self) -> int:
        """Descriptor length D."""
        return self.descriptors.shape[1]

    @classmethod
    def empty(cls, dim: int = 0) -> LocalFeatures:
        """No keypoints, descriptors of length `dim`."""
        zeros = np.zeros(0, np.float32)
        return cls(np.zeros((0, 2), np.float32), zeros, zeros, zeros, np.zeros((0, dim), np.float32))

    def subset(self, index: np.ndarray | slice) -> LocalFeatures:
        """The rows selected by `index` (integer indices, a boolean mask or a slice)."""
        return LocalFeatures(self.xy[index], self.scale[index], self.angle[index], self.response[index],
                             self.descriptors[index])

    @staticmethod
    def concatenate(parts: list[LocalFeatures], dim: int = 0) -> LocalFeatures:
        """All rows of `parts` in order; `LocalFeatures.empty(dim)` when there are none."""
        if not parts:
            return LocalFeatures.empty(dim)
        return LocalFeatures(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                               ("xy", "scale", "angle", "response", "descriptors")))


@runtime_checkable
class FeatureExtractor(Protocol):
    """Detector -> orientation -> descriptor: what SIFT, RootSIFT and LIFT all provide.

    ``name`` identifies the descriptor space (descriptors of different names are never compared, so a
    database registered with one refuses scenes described by another); ``descriptor_dim`` is D.
    """

    name: str
    descriptor_dim: int

    def extract(self, gray: np.ndarray) -> LocalFeatures:
        """Keypoints of a grayscale image with their descriptors.

        Shape:
            - gray: (H, W) uint8.
            - Output: N keypoints with (N, descriptor_dim) descriptors; N may be 0.
        """
        ...


def as_gray(image: ImageLike) -> np.ndarray:
    """A grayscale uint8 array from a path, an (H, W) array, or a (C, H, W) uint8 array/tensor with C in {1, 3}.

    Colour is converted to luminance with PIL's ITU-R 601-2 weights, as `read_image(channels=1)` does.

    Shape:
        - Output: (H, W) uint8.
    """
    if isinstance(image, (str, os.PathLike)):
        return read_image(Path(image), channels=1)[0].numpy()
    tensor = torch.as_tensor(image)
    if tensor.dtype != torch.uint8:
        raise TypeError(f"expected a uint8 image, got {tensor.dtype}")
    if tensor.ndim == 2:
        return np.ascontiguousarray(tensor.cpu().numpy())
    if tensor.ndim != 3 or tensor.shape[0] not in (1, 3):
        raise ValueError(f"expected an (H, W) or (C, H, W) image with C in (1, 3), got shape {tuple(tensor.shape)}")
    return np.ascontiguousarray(to_channels(tensor.cpu(), 1)[0].numpy())


def image_outline(height: int, width: int) -> np.ndarray:
    """The outer corners of an image, clockwise on screen from the top-left, in keypoint coordinates.

    Shape:
        - Output: (4, 2) float64 (x, y): (-0.5, -0.5), (W - 0.5, -0.5), (W - 0.5, H - 0.5), (-0.5, H - 0.5).
    """
    right, bottom = width - 0.5, height - 0.5
    return np.array([[-0.5, -0.5], [right, -0.5], [right, bottom], [-0.5, bottom]], np.float64)
