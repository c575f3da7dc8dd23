"""LIFT local features on whole images, behind the `FeatureExtractor` interface SIFT implements (Yi et al.,
"LIFT: Learned Invariant Feature Transform", ECCV 2016, section 3.4, "runtime pipeline").

1. DET scores every pixel of the image at several scales (1, 1/sqrt(2), 1/2, ...; each resized with
   antialiasing); the score maps are resized back to the image and keypoints are the local maxima over
   position and scale (3 x (2 r + 1) x (2 r + 1) non-maximum suppression), away from the border, strongest
   first; a maximum must stand `min_contrast` above the lowest score around it (none in blank areas). A
   keypoint found at scale s is given the diameter P / s image pixels: the extent of the P x P
   patch DET saw there.
2. ORI reads each keypoint's patch sampled without rotation and gives its angle.
3. DESC describes the patch re-sampled at that angle.

Positions are refined to sub-pixel precision by a parabola through each maximum's neighbours. Angles follow
`ninshiki.match.features` (rotating the image by +a adds a), as SIFT's do.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ninshiki.match.features import LocalFeatures
from ninshiki.models.match.lift import LIFT, lift
from ninshiki.models.match.lift_patches import Pyramid, build_pyramid, sample_patches

DEFAULT_SCALES: tuple[float, ...] = (1.0, 2 ** -0.5, 0.5, 2 ** -1.5, 0.25)


class LiftExtractor:
    """Keypoints, orientations and descriptors from a LIFT model.

    Args:
        model: the three networks (its patch size and descriptor length are used).
        max_features: keep at most this many keypoints, the strongest by DET score.
        scales: the image scales DET runs at (each in (0, 1]; the image is never enlarged).
        nms_radius: r, the half-width in pixels of the non-maximum suppression window.
        min_score: drop keypoints scoring below this; None keeps every local maximum.
        min_contrast: drop maxima that stand less than this above the lowest score in their window (blank
            areas: the untrained DET scores range over about 0..1 on photos).
        batch_size: patches per forward pass of ORI and DESC.
    """

    name = "lift"

    def __init__(self, model: LIFT, *, max_features: int = 2000, scales: Sequence[float] = DEFAULT_SCALES,
                 nms_radius: int = 4, min_score: float | None = None, min_contrast: float = 1e-3,
                 batch_size: int = 512) -> None:
        if max_features < 1 or nms_radius < 0 or batch_size < 1:
            raise ValueError(f"need max_features >= 1, nms_radius >= 0 and batch_size >= 1, got {max_features}, "
                             f"{nms_radius} and {batch_size}")
        if not scales or not all(0 < s <= 1 for s in scales):
            raise ValueError(f"scales must be a non-empty list of values in (0, 1], got {list(scales)}")
        self.model = model
        self.max_features = max_features
        self.scales = tuple(sorted((float(s) for s in scales), reverse=True))
        self.nms_radius = nms_radius
        self.min_score = min_score
        self.min_contrast = min_contrast
        self.batch_size = batch_size

    @classmethod
    def from_weights(cls, path: str | os.PathLike[str], **kwargs: object) -> LiftExtractor:
        """An extractor with a model rebuilt from a weights file written by `train_lift` (its record gives the
        architecture). kwargs go to the constructor."""
        from ninshiki.engine.checkpoint import read_record
        from ninshiki.models.weights import load_weights

        record = read_record(path)
        if record.get("model", "lift") != "lift":
            raise ValueError(f"{path}: holds a {record.get('model')!r} model, not lift")
        model = lift(**record.get("model_kwargs", {}))
        load_weights(model, path)
        return cls(model.eval(), **kwargs)  # type: ignore[arg-type]

    @property
    def descriptor_dim(self) -> int:
        return self.model.descriptor_dim

    @property
    def patch_size(self) -> int:
        return self.model.patch_size

    def config(self) -> dict[str, object]:
        """The constructor keywords (JSON-able), to record which extractor built a database."""
        return {"max_features": self.max_features, "scales": list(self.scales), "nms_radius": self.nms_radius,
                "min_score": self.min_score, "min_contrast": self.min_contrast, "batch_size": self.batch_size, **self.model.model_kwargs()}

    def __repr__(self) -> str:
        return f"LiftExtractor({', '.join(f'{k}={v!r}' for k, v in self.config().items())})"

    def detect(self, gray: np.ndarray) -> LocalFeatures:
        """DET's keypoints with ORI's orientations, strongest first; no descriptors (D = 0).

        Shape:
            - gray: (H, W) uint8.
        """
        image = _to_tensor(gray, self._device())                                  # (1, 1, H, W)
        with torch.no_grad():
            xy, diameter, response = self._keypoints(image)
            if len(xy) == 0:
                return LocalFeatures.empty()
            pyramid = build_pyramid(image, max_diameter=float(diameter.max()), patch_size=self.patch_size)
            angle = self._batched(pyramid, xy, diameter, torch.zeros_like(diameter), self.model.orient)
        return LocalFeatures(xy.cpu().numpy(), diameter.cpu().numpy(), angle.cpu().numpy() % 360.0,
                             response.cpu().numpy(), np.zeros((len(xy), 0), np.float32))

    def describe(self, gray: np.ndarray, keypoints: LocalFeatures) -> LocalFeatures:
        """DESC's descriptors at the given keypoints (position, scale as patch diameter, and angle are kept).

        Shape:
            - gray: (H, W) uint8.
            - Output: the same N keypoints with (N, D) float32 descriptors.
        """
        if len(keypoints) == 0:
            return LocalFeatures.empty(self.descriptor_dim)
        device = self._device()
        image = _to_tensor(gray, device)                                          # (1, 1, H, W)
        xy, diameter, angle = (torch.from_numpy(a).to(device) for a in
                               (keypoints.xy, keypoints.scale, keypoints.angle))
        with torch.no_grad():
            pyramid = build_pyramid(image, max_diameter=float(keypoints.scale.max()), patch_size=self.patch_size)
            descriptors = self._batched(pyramid, xy, diameter, angle, self.model.describe)
        return LocalFeatures(keypoints.xy, keypoints.scale, keypoints.angle, keypoints.response,
                             descriptors.cpu().numpy())

    def extract(self, gray: np.ndarray) -> LocalFeatures:
        """Keypoints and descriptors: `describe(gray, detect(gray))`.

        Shape:
            - gray: (H, W) uint8.
            - Output: N keypoints with (N, D) float32 descriptors; N may be 0.
        """
        return self.describe(gray, self.detect(gray))

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _keypoints(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Local maxima of DET's scores over position and scale: xy (K, 2), diameter (K,), score (K,)."""
        height, width = image.shape[-2:]
        maps, margins, factors = [], [], []
        for scale in self.scales:
            size = (max(1, round(height * scale)), max(1, round(width * scale)))
            if min(size) <= self.model.detector.kernel_size // 2:                 # too small to pad; scales shrink
                break
            level = image if size == (height, width) else F.interpolate(
                image, size=size, mode="bilinear", antialias=True, align_corners=False)
            score = self.model.score_map(level)                                   # (1, 1, h, w)
            maps.append(F.interpolate(score, size=(height, width), mode="bilinear", align_corners=False)[0, 0])
            factor = math.sqrt(size[0] * size[1] / (height * width))              # the level's actual scale
            factors.append(factor)
            margins.append(math.ceil(max(self.nms_radius, self.model.detector.kernel_size // 2) / factor))
        if not maps:
            empty = torch.zeros(0, device=image.device)
            return empty.view(0, 2), empty, empty
        stack = torch.stack(maps).float().cpu().numpy()                           # (L, H, W)
        # a maximum, and above the lowest score around it: no keypoints where the scores are flat (blank areas)
        contrast = stack - _local_minima(stack, self.nms_radius)                  # (L, H, W)
        keep = ((stack == _scale_space_maxima(stack, self.nms_radius)) & (contrast > self.min_contrast)
                & _inner(stack.shape, margins))
        if self.min_score is not None:
            keep &= stack >= self.min_score
        level, row, col = np.nonzero(keep)                                        # (K,) each
        score = stack[level, row, col]
        order = np.argsort(-score, kind="stable")[: self.max_features]
        xy = _refine(stack, level[order], row[order], col[order])                 # (K, 2)
        diameter = (self.patch_size / np.asarray(factors))[level[order]].astype(np.float32)
        return tuple(torch.from_numpy(a).to(image.device) for a in (xy, diameter, score[order]))

    def _batched(self, pyramid: Pyramid, xy: Tensor, diameter: Tensor, angle: Tensor,
                 net: Callable[[Tensor], Tensor]) -> Tensor:
        """`net` (ORI's `orient` or DESC's `describe`) on the keypoints' patches, `batch_size` at a time (N >= 1)."""
        return torch.cat([net(sample_patches(pyramid, xy[i:i + self.batch_size], diameter[i:i + self.batch_size],
                                             angle[i:i + self.batch_size], patch_size=self.patch_size))
                          for i in range(0, len(xy), self.batch_size)])


def _scale_space_maxima(stack: np.ndarray, radius: int) -> np.ndarray:
    """The maximum over each (2 r + 1)^2 window of a level and the levels either side (OpenCV's dilation is
    an order of magnitude faster than torch's max pooling on the CPU).

    Shape:
        - stack: (L, H, W) float32. Output: the same.
    """
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    spatial = np.stack([cv2.dilate(level, kernel, borderType=cv2.BORDER_REPLICATE) for level in stack])
    out = spatial.copy()
    out[1:] = np.maximum(out[1:], spatial[:-1])
    out[:-1] = np.maximum(out[:-1], spatial[1:])
    return out


def _refine(stack: np.ndarray, level: np.ndarray, row: np.ndarray, col: np.ndarray) -> np.ndarray:
    """Sub-pixel positions of maxima: the vertex of the parabola through each maximum and its two neighbours,
    in x and in y separately (moved at most half a pixel).

    Shape:
        - stack: (L, H, W); level, row, col: (K,) int. Output: (K, 2) float32 (x, y).
    """
    _, height, width = stack.shape
    offsets = []
    for axis, (index, size) in enumerate(((col, width), (row, height))):
        before, after = np.clip(index - 1, 0, size - 1), np.clip(index + 1, 0, size - 1)
        pick = (lambda i: stack[level, row, i]) if axis == 0 else (lambda i: stack[level, i, col])
        left, centre, right = pick(before), stack[level, row, col], pick(after)
        curvature = left - 2 * centre + right                                     # <= 0 at a maximum
        with np.errstate(divide="ignore", invalid="ignore"):
            step = np.where(curvature < 0, 0.5 * (left - right) / curvature, 0.0)
        offsets.append(np.clip(np.nan_to_num(step), -0.5, 0.5))
    return np.stack([col + offsets[0], row + offsets[1]], axis=1).astype(np.float32)


def _local_minima(stack: np.ndarray, radius: int) -> np.ndarray:
    """The minimum over each (2 r + 1)^2 window of each level.

    Shape:
        - stack: (L, H, W) float32. Output: the same.
    """
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    return np.stack([cv2.erode(level, kernel, borderType=cv2.BORDER_REPLICATE) for level in stack])


def _inner(shape: tuple[int, ...], margins: list[int]) -> np.ndarray:
    """(L, H, W) True at least margins[l] pixels from the image border."""
    _, height, width = shape
    rows = np.arange(height).reshape(1, -1, 1)
    cols = np.arange(width).reshape(1, 1, -1)
    margin = np.asarray(margins).reshape(-1, 1, 1)
    return (rows >= margin) & (rows < height - margin) & (cols >= margin) & (cols < width - margin)


def _to_tensor(gray: np.ndarray, device: torch.device) -> Tensor:
    if not isinstance(gray, np.ndarray) or gray.ndim != 2 or gray.dtype != np.uint8:
        raise ValueError(f"LIFT needs an (H, W) uint8 grayscale array, got {type(gray).__name__} "
                         f"{getattr(gray, 'dtype', '')} {getattr(gray, 'shape', '')}")
    return torch.from_numpy(gray).to(device).float().div(255)[None, None]
