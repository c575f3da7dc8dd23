"""Haar-like features over integral images: Viola and Jones, "Rapid Object Detection using a Boosted Cascade of
Simple Features", CVPR 2001, written in OpenCV's convention so a trained cascade is OpenCV's without translation.

The set is the paper's (OpenCV's `BASIC` mode): two-rectangle (`x2`, `y2`), three-rectangle (`x3`, `y3`) and
four-rectangle (`x2y2`) features at every position and scale of the window. Like `opencv_traincascade`
(haarfeatures.cpp), a feature is a whole rectangle with weight -1 plus its "+" cells with positive weights, so
that the weights sum to zero over the area and a constant image gives 0:

    x2: [x, y, 2dx, dy, -1], [x+dx, y, dx, dy, +2]            (right minus left)
    x3: [x, y, 3dx, dy, -1], [x+dx, y, dx, dy, +3]            (2 * middle minus both sides)
    x2y2: [x, y, 2dx, 2dy, -1], [x, y, dx, dy, +2], [x+dx, y+dy, dx, dy, +2]   (diagonal minus anti-diagonal)

and `y2`, `y3` the transposes. (Some `traincascade` versions write +2 for the three-rectangle cells, which is not
zero-sum; OpenCV's own cascades, e.g. haarcascade_frontalface_default.xml, use +3 as here.)
Against `skimage.feature.haar_like_feature` (which returns the second rectangle's sum minus the first's, and
for three rectangles middle - left - right, for four top-right + bottom-left - top-left - bottom-right):
x2, y2 are equal; x3, y3 equal skimage's value plus the middle sum; x2y2 is minus skimage's value.

Values are normalised as OpenCV's `HaarEvaluator` does at detection time (cascadedetect.cpp, `setWindow` and
`operator()`): with s and q the sum and sum of squares over the inner rectangle (1, 1, w-2, h-2) of area A,
nf = A*q - s*s, the factor is vnf = float32(1 / sqrt(nf)) (1 when nf <= 0) and the value is
float32(raw) * vnf in float32, raw = sum_i weight_i * S(rect_i). OpenCV evaluates a window only when nf > 0 and
A * vnf < 0.1, i.e. when the inner rectangle's standard deviation exceeds 10 grey levels (`window_ok`).
Integral sums of 8-bit windows are exact in float32 up to 2^24, so these values equal OpenCV's bit for bit.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ninshiki.classical.haar.cascade import HaarFeature

KINDS = ("x2", "y2", "x3", "y3", "x2y2")
_CELLS = {"x2": (2, 1), "y2": (1, 2), "x3": (3, 1), "y3": (1, 3), "x2y2": (2, 2)}   # kind: (cells across, down)
_MIN_STD = 10.0   # OpenCV skips windows whose inner standard deviation is at most this (area * vnf >= 0.1)


def _kind_rects(kind: str, x: np.ndarray, y: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Rectangles [x, y, w, h, weight] of `kind` features with cell size (dx, dy) at (x, y); shape (n, 3, 5)."""
    zero = np.zeros_like(x)
    if kind == "x2":
        rects = [(x, y, 2 * dx, dy, -1), (x + dx, y, dx, dy, 2)]
    elif kind == "y2":
        rects = [(x, y, dx, 2 * dy, -1), (x, y + dy, dx, dy, 2)]
    elif kind == "x3":
        rects = [(x, y, 3 * dx, dy, -1), (x + dx, y, dx, dy, 3)]
    elif kind == "y3":
        rects = [(x, y, dx, 3 * dy, -1), (x, y + dy, dx, dy, 3)]
    else:
        rects = [(x, y, 2 * dx, 2 * dy, -1), (x, y, dx, dy, 2), (x + dx, y + dy, dx, dy, 2)]
    rects += [(zero, zero, zero, zero, 0)] * (3 - len(rects))
    return np.stack([np.stack([np.broadcast_to(np.asarray(v, np.float64), x.shape) for v in r], -1)
                     for r in rects], 1)                                                   # (n, 3, 5)


def enumerate_features(window: tuple[int, int] = (24, 24), *, kinds: Sequence[str] = KINDS, min_size: int = 1,
                       step: int = 1) -> list[HaarFeature]:
    """Every feature of `kinds` at every position and scale of a (width, height) window.

    Args:
        window: (width, height) of the detection window.
        kinds: Any of "x2", "y2", "x3", "y3", "x2y2".
        min_size: Smallest cell side (dx, dy) in pixels.
        step: Stride of the positions (x, y) and of the cell sides, to bound the count: 162,336 features for a
            24 x 24 window at step 1 (the count of the paper's set, and of `skimage.feature.haar_like_feature`),
            12,372 at step 2.

    Returns:
        Features in kind-major order; two rectangles for x2/y2/x3/y3, three for x2y2.
    """
    width, height = window
    unknown = [k for k in kinds if k not in _CELLS]
    if unknown or min_size < 1 or step < 1:
        raise ValueError(f"enumerate_features: kinds must be among {KINDS} (got {unknown}), min_size and step >= 1 "
                         f"(got {min_size}, {step})")
    features: list[HaarFeature] = []
    for kind in kinds:
        nx, ny = _CELLS[kind]
        dx, dy, x, y = np.meshgrid(np.arange(min_size, width + 1, step), np.arange(min_size, height + 1, step),
                                   np.arange(0, width, step), np.arange(0, height, step), indexing="ij")
        keep = (x + nx * dx <= width) & (y + ny * dy <= height)
        rects = _kind_rects(kind, x[keep], y[keep], dx[keep], dy[keep])                   # (n, 3, 5)
        count = 3 if kind == "x2y2" else 2
        features += [HaarFeature(r[:count].copy()) for r in rects]
    return features


@dataclass(frozen=True)
class FeatureTable:
    """Features compiled to integral-image corners: value = sum_k coef[:, k] * II[cy[:, k], cx[:, k]].

    Corners shared by two rectangles are merged (6 corners for x2, 8 for x3, 9 for x2y2); rows are padded with
    coefficient 0 at corner (0, 0).

    Shape:
        cx, cy: (F, K) int64 corner coordinates in the (h + 1, w + 1) integral image of a window.
        coef: (F, K) float32 integer-valued coefficients.
    """

    cx: np.ndarray
    cy: np.ndarray
    coef: np.ndarray
    window: tuple[int, int]

    def __len__(self) -> int:
        return len(self.coef)

    def index(self, stride: int) -> np.ndarray:
        """(F, K) flat offsets of the corners in an integral image whose rows are `stride` apart."""
        return self.cy * stride + self.cx


def compile_features(features: Sequence[HaarFeature], window: tuple[int, int]) -> FeatureTable:
    """Merge each feature's rectangle corners into one table; rectangles must lie inside the window."""
    width, height = window
    if not features:
        empty = np.zeros((0, 1), np.int64)
        return FeatureTable(empty, empty, np.zeros((0, 1), np.float32), window)
    rects = np.zeros((len(features), 3, 5))                                                # (F, 3, 5)
    for i, feature in enumerate(features):
        if feature.tilted or not 1 <= len(feature.rects) <= 3:
            raise ValueError(f"compile_features: feature {i} must be upright with 1 to 3 rectangles")
        rects[i, :len(feature.rects)] = feature.rects
    x, y, w, h, weight = np.moveaxis(rects, -1, 0).astype(np.int64)                       # each (F, 3)
    bad = (weight != 0) & ((x < 0) | (y < 0) | (w < 1) | (h < 1) | (x + w > width) | (y + h > height))
    if bad.any():
        raise ValueError(f"compile_features: feature {int(bad.any(1).argmax())} has a rectangle outside the "
                         f"{width}x{height} window")
    weight = rects[..., 4]
    cx = np.concatenate([x, x + w, x, x + w], 1)                                           # (F, 12)
    cy = np.concatenate([y, y, y + h, y + h], 1)
    coef = np.concatenate([weight, -weight, -weight, weight], 1)
    # merge equal corners of a row: sort keys (row, corner), sum coefficients of equal keys, drop zeros
    stride = width + 1
    keys = np.arange(len(features))[:, None] * (stride * (height + 1)) + cy * stride + cx
    unique, inverse = np.unique(keys.ravel(), return_inverse=True)
    summed = np.bincount(inverse, weights=coef.ravel())
    unique, summed = unique[summed != 0], summed[summed != 0]
    row, corner = np.divmod(unique, stride * (height + 1))
    counts = np.bincount(row, minlength=len(features))
    slot = np.arange(len(row)) - np.repeat(np.cumsum(counts) - counts, counts)
    k = max(int(counts.max()), 1)
    out_x, out_y = np.zeros((len(features), k), np.int64), np.zeros((len(features), k), np.int64)
    out_c = np.zeros((len(features), k), np.float32)
    out_y[row, slot], out_x[row, slot] = np.divmod(corner, stride)
    out_c[row, slot] = summed
    return FeatureTable(out_x, out_y, out_c, window)


def batch_integrals(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum and squared-sum integral images with a zero first row and column (OpenCV's layout).

    Shape:
        images: (N, h, w) uint8 -> (N, h + 1, w + 1) int64 each.
    """
    images = np.asarray(images)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"batch_integrals: expected (N, h, w) uint8 images, got {images.dtype} {images.shape}")
    n, h, w = images.shape
    pixels = images.astype(np.int64)
    ii, sq = np.zeros((n, h + 1, w + 1), np.int64), np.zeros((n, h + 1, w + 1), np.int64)
    ii[:, 1:, 1:] = pixels.cumsum(1).cumsum(2)
    sq[:, 1:, 1:] = (pixels * pixels).cumsum(1).cumsum(2)
    return ii, sq


def variance_norm(ii: np.ndarray, sq: np.ndarray, offsets: np.ndarray, strides: np.ndarray | int,
                  window: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's variance-normalisation factor of windows, and whether OpenCV evaluates them at all.

    Args:
        ii, sq: Flat sum and squared-sum integral images (several may be concatenated).
        offsets: Flat index of each window's top-left integral corner.
        strides: Row stride of the integral image each window lies in.
        window: (width, height).

    Shape:
        offsets, strides: (n,) -> vnf (n,) float32, ok (n,) bool.
    """
    width, height = window
    area = float((width - 2) * (height - 2))
    strides = np.asarray(strides, np.int64)
    corners = [offsets + strides + 1, offsets + strides + width - 1, offsets + strides * (height - 1) + 1,
               offsets + strides * (height - 1) + width - 1]
    s = (ii[corners[0]] - ii[corners[1]] - ii[corners[2]] + ii[corners[3]]).astype(np.float64)   # (n,)
    q = (sq[corners[0]] - sq[corners[1]] - sq[corners[2]] + sq[corners[3]]).astype(np.float64)
    nf = area * q - s * s
    positive = nf > 0
    vnf = np.ones(len(nf), np.float32)
    vnf[positive] = (1.0 / np.sqrt(nf[positive])).astype(np.float32)
    ok = positive & (area * vnf.astype(np.float64) < 1.0 / _MIN_STD)
    return vnf, ok


def window_values(ii: np.ndarray, offsets: np.ndarray, strides: np.ndarray | int, table: FeatureTable,
                  vnf: np.ndarray) -> np.ndarray:
    """Normalised feature values of windows anywhere in flat integral images (the detector's arithmetic).

    Shape:
        ii: flat integral image(s); offsets, strides, vnf: (n,) -> (n, F) float32.
    """
    strides = np.asarray(strides, np.int64).reshape(-1, 1)
    base = offsets.reshape(-1, 1).astype(np.int64)
    raw = np.zeros((len(base), len(table)), np.float64)                                    # (n, F)
    for k in range(table.coef.shape[1]):
        raw += table.coef[:, k] * ii[base + strides * table.cy[:, k] + table.cx[:, k]]
    return raw.astype(np.float32) * vnf.reshape(-1, 1)


def window_ok(patches: np.ndarray) -> np.ndarray:
    """Whether OpenCV evaluates each (N, h, w) uint8 window at all (inner standard deviation above 10)."""
    ii, sq = batch_integrals(patches)
    n, h1, w1 = ii.shape
    return variance_norm(ii.ravel(), sq.ravel(), np.arange(n) * h1 * w1, w1, (w1 - 1, h1 - 1))[1]


def corner_matrix(table: FeatureTable, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Dense matrix of features start:stop over the flat integral image: values = flat @ matrix.

    Shape:
        -> ((h + 1) * (w + 1), stop - start) float32.
    """
    width, height = table.window
    coef = table.coef[start:stop]
    rows, slots = np.nonzero(coef)
    matrix = np.zeros(((height + 1) * (width + 1), len(coef)), np.float32)
    matrix[table.index(width + 1)[start:stop][rows, slots], rows] = coef[rows, slots]   # merged corners are unique
    return matrix


def feature_values(patches: np.ndarray, features: Sequence[HaarFeature] | FeatureTable, *,
                   chunk: int = 8192) -> np.ndarray:
    """Normalised values of every feature on every window-sized patch, vectorised over integral images.

    A feature is a fixed combination of at most 9 integral-image corners, so the values of all features on all
    patches are one product (N, (h+1)(w+1)) @ ((h+1)(w+1), F) with a sparse corner matrix; done densely by BLAS,
    per chunk of features, it is ~7x faster on a CPU than one gather per corner. Every partial sum is an
    integer below sum|coef| * 255 * h * w, so float32 is exact up to ~64 x 64 windows (float64 beyond) and the
    result equals what the detector computes on that window.

    Shape:
        patches: (N, h, w) uint8 -> (N, F) float32, column-major (a feature's values are contiguous, as the
        per-feature sorts of boosting want them).
    """
    patches = np.asarray(patches)
    if patches.ndim != 3 or patches.dtype != np.uint8:
        raise ValueError(f"feature_values: expected (N, h, w) uint8 patches, got {patches.dtype} {patches.shape}")
    n, h, w = patches.shape
    table = features if isinstance(features, FeatureTable) else compile_features(features, (w, h))
    if table.window != (w, h):
        raise ValueError(f"feature_values: features are for a {table.window} window, patches are {(w, h)}")
    ii, sq = batch_integrals(patches)
    vnf, _ = variance_norm(ii.ravel(), sq.ravel(), np.arange(n) * (h + 1) * (w + 1), w + 1, (w, h))
    bound = float(np.abs(table.coef).sum(1).max(initial=0)) * 255 * h * w
    dtype = np.float32 if bound < 2 ** 24 else np.float64
    flat = ii.reshape(n, -1).astype(dtype)                                                 # (N, (h+1)(w+1))
    out = np.empty((len(table), n), np.float32)                                            # (F, N)
    for start in range(0, len(table), chunk):
        stop = min(start + chunk, len(table))
        raw = corner_matrix(table, start, stop).T.astype(dtype) @ flat.T                    # (chunk, N)
        out[start:stop] = raw.astype(np.float32) * vnf
    return out.T
