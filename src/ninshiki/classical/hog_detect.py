"""Sliding-window detection with HOG and linear SVMs (Dalal and Triggs, "Histograms of oriented gradients for
human detection", CVPR 2005), reproducing `cv2.HOGDescriptor.detectMultiScale` step for step.

OpenCV's procedure, with the Python binding's defaults (`detectMultiScale(img)`: hit threshold 0, window
stride = block stride, padding (0, 0), scale 1.05, group threshold 2, no mean-shift, `nlevels` 64):

1. Pyramid: scales 1, s, s^2, ... (repeated multiplication in double) while round(W / scale) and
   round(H / scale) are at least the window, at most `nlevels` of them (at least one). Level images are
   `cv2.resize(image, (round(W / scale), round(H / scale)), INTER_LINEAR_EXACT)`.
2. Per level: the padding is aligned to gcd(window stride, block stride); windows start at -padding and step
   by the window stride over the padded image; a window is a hit when b + w . x >= `hit_threshold`.
3. A hit at (x, y) of a level becomes the rectangle (round(x * scale), round(y * scale), round(64 * scale),
   round(128 * scale)) in the input image (round half to even, as `cvRound`).
4. Grouping (`HOGDescriptor::groupRectangles`, not `cv::groupRectangles`, whose averages round differently):
   rectangles join a cluster when all four sides lie within eps = 0.2 of the mean of the smaller widths and
   heights (transitively); clusters with at most `group_threshold` members are dropped, the rest averaged
   (rounded), and an average lying inside a larger cluster's average (with margin eps) that has more members
   is dropped. A cluster's score is its best member's. Group threshold 0 keeps every hit.
5. Rectangles are clipped to the image.

Here every window's score comes from one correlation of the level's block grid with the SVM weights (all
classes at once), instead of OpenCV's per-window loop. `grouping="nms"` replaces step 4 by non-maximum
suppression, which keeps scores meaningful for average precision.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import torch
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from torchvision.ops import batched_nms

from ninshiki.classical.hog import HOGParams, align_padding, hog_blocks, one_blas_thread, window_grid

GROUPING_EPS = 0.2   # OpenCV's detectMultiScale passes 0.2 to groupRectangles


def pyramid_scales(image_size: tuple[int, int], win_size: tuple[int, int], *, scale: float = 1.05,
                   nlevels: int = 64) -> list[float]:
    """The scales OpenCV's detectMultiScale visits for an image of `image_size` (w, h)."""
    scales, current = [], 1.0
    for _ in range(nlevels):
        scales.append(current)
        if (round(image_size[0] / current) < win_size[0] or round(image_size[1] / current) < win_size[1]
                or scale <= 1):
            scales.pop()
            break
        current *= scale
    return scales or [1.0]


def score_windows(blocks: np.ndarray, weights: np.ndarray, bias: np.ndarray, params: HOGParams, *,
                  grid_stride: tuple[int, int], win_stride: tuple[int, int]) -> np.ndarray:
    """SVM margins b_k + w_k . x of every window of a block grid (see `window_descriptors` for the layout).

    Shape:
        - blocks: (By, Bx, block_dim) float32.
        - weights: (K, D) in OpenCV's descriptor order; bias: (K,).
        - returns (K, Ny, Nx) float64 (block terms in float32, as OpenCV's per-block sums).
    """
    (nbx, nby), (bsx, bsy) = params.blocks_per_window, params.block_stride
    (gx, gy), (wsx, wsy) = grid_stride, win_stride
    kx, ky, tx, ty = bsx // gx, bsy // gy, wsx // gx, wsy // gy
    ny, nx = window_grid(blocks, params, grid_stride=grid_stride, win_stride=win_stride)
    num_classes = len(weights)
    if ny == 0 or nx == 0:
        return np.zeros((num_classes, 0, 0))
    # Every block's dot product with every (class, block position) of the weights in one product, then each
    # window adds up its blocks' terms: a correlation, with far fewer operations than per-window dot products.
    kernel = np.asarray(weights, np.float32).reshape(num_classes * nbx * nby, -1)       # (K nbx nby, bd)
    grid_y, grid_x = blocks.shape[:2]
    with one_blas_thread():
        terms = blocks.reshape(grid_y * grid_x, -1) @ kernel.T                        # (By Bx, K nbx nby)
    terms = terms.reshape(grid_y, grid_x, num_classes, nbx, nby)
    margins = np.zeros((ny, nx, num_classes))
    for i in range(nby):
        for j in range(nbx):
            margins += terms[i * ky: i * ky + (ny - 1) * ty + 1: ty, j * kx: j * kx + (nx - 1) * tx + 1: tx, :, j, i]
    return margins.transpose(2, 0, 1) + np.asarray(bias, np.float64)[:, None, None]


def level_hits(image: np.ndarray, weights: np.ndarray, bias: np.ndarray, params: HOGParams, *,
               hit_threshold: float, win_stride: tuple[int, int], padding: tuple[int, int]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows of one image (one pyramid level) scoring >= `hit_threshold`: OpenCV's `HOGDescriptor::detect`.

    Shape:
        returns top-left corners (N, 2) int64 (x, y) in image pixels (negative inside the padding),
        margins (N,) float64 and class indices (N,) int64; ordered by class, then row by row.
    """
    grid = (math.gcd(win_stride[0], params.block_stride[0]), math.gcd(win_stride[1], params.block_stride[1]))
    pad = (align_padding(padding[0], grid[0]), align_padding(padding[1], grid[1]))
    blocks = hog_blocks(image, params, stride=grid, padding=pad)
    margins = score_windows(blocks, weights, bias, params, grid_stride=grid, win_stride=win_stride)
    labels, rows, cols = np.nonzero(margins >= hit_threshold)
    corners = np.stack([cols * win_stride[0] - pad[0], rows * win_stride[1] - pad[1]], 1).astype(np.int64)
    return corners, margins[labels, rows, cols], labels.astype(np.int64)


def pyramid_hits(image: np.ndarray, weights: np.ndarray, bias: np.ndarray, params: HOGParams, *,
                 hit_threshold: float = 0.0, win_stride: tuple[int, int] | None = None,
                 padding: tuple[int, int] = (0, 0), scale: float = 1.05, nlevels: int = 64
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hits of every pyramid level as rectangles of the input image, before grouping (steps 1-3 above).

    Shape:
        - image: (H, W) or (H, W, 3) uint8; weights (K, D); bias (K,).
        - returns rects (N, 4) int64 (x, y, w, h), margins (N,) float64, class indices (N,) int64.
    """
    win_stride = win_stride or params.block_stride
    height, width = image.shape[:2]
    rects, margins, labels = [], [], []
    for level_scale in pyramid_scales((width, height), params.win_size, scale=scale, nlevels=nlevels):
        size = (round(width / level_scale), round(height / level_scale))
        level = image if size == (width, height) else cv2.resize(image, size, interpolation=cv2.INTER_LINEAR_EXACT)
        corners, level_margins, level_labels = level_hits(level, weights, bias, params, hit_threshold=hit_threshold,
                                                          win_stride=win_stride, padding=padding)
        win = np.array([round(params.win_size[0] * level_scale), round(params.win_size[1] * level_scale)])
        xy = np.rint(corners * level_scale).astype(np.int64)                     # (n, 2)
        rects.append(np.concatenate([xy, np.broadcast_to(win, xy.shape)], 1))
        margins.append(level_margins)
        labels.append(level_labels)
    return (np.concatenate(rects).reshape(-1, 4), np.concatenate(margins), np.concatenate(labels))


def _clusters(rects: np.ndarray, eps: float) -> np.ndarray:
    """OpenCV's `partition` with `SimilarRects(eps)`: cluster index per rectangle, numbered by first member."""
    x1, y1, w, h = rects.T.astype(np.float64)
    delta = eps * (np.minimum.outer(w, w) + np.minimum.outer(h, h)) * 0.5                  # (N, N)
    close = ((np.abs(x1[:, None] - x1) <= delta) & (np.abs(y1[:, None] - y1) <= delta)
             & (np.abs((x1 + w)[:, None] - (x1 + w)) <= delta) & (np.abs((y1 + h)[:, None] - (y1 + h)) <= delta))
    _, labels = connected_components(csr_matrix(close), directed=False)
    _, first = np.unique(labels, return_index=True)
    order = np.empty(len(first), np.int64)
    order[np.argsort(first)] = np.arange(len(first))
    return order[labels]


def group_rectangles(rects: np.ndarray, scores: np.ndarray, group_threshold: int, eps: float = GROUPING_EPS
                     ) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's `HOGDescriptor::groupRectangles` (step 4 of the module docstring).

    Shape:
        - rects: (N, 4) int (x, y, w, h); scores: (N,).
        - returns the kept cluster averages (M, 4) int64 (x, y, w, h) and their best scores (M,), in order
          of each cluster's first member.
    """
    if group_threshold <= 0 or len(rects) == 0:
        return rects.astype(np.int64).reshape(-1, 4), scores
    labels = _clusters(rects, eps)
    count = np.bincount(labels)                                                   # (C,)
    sums = np.zeros((len(count), 4))
    np.add.at(sums, labels, rects.astype(np.float64))
    best = np.full(len(count), -np.inf)
    np.maximum.at(best, labels, scores)
    mean = np.rint(sums * (1.0 / count)[:, None]).astype(np.int64)              # OpenCV: sum * (1 / n), cvRound
    x1, y1, w, h = mean.T
    dx, dy = np.rint(w * eps).astype(np.int64), np.rint(h * eps).astype(np.int64)
    big = count > group_threshold
    # inside[i, j]: cluster i lies inside cluster j (with j's margin) and j is the stronger one
    inside = ((x1[:, None] >= (x1 - dx)[None]) & (y1[:, None] >= (y1 - dy)[None])
              & ((x1 + w)[:, None] <= (x1 + w + dx)[None]) & ((y1 + h)[:, None] <= (y1 + h + dy)[None])
              & ((count[None] > np.maximum(3, count)[:, None]) | (count[:, None] < 3)))
    inside &= big[None] & ~np.eye(len(count), dtype=bool)
    keep = big & ~inside.any(1)
    return mean[keep], best[keep]


def clip_rectangles(rects: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Intersect (x, y, w, h) rectangles with the image (w, h); returns xyxy boxes and the non-empty mask."""
    x1 = np.maximum(rects[:, 0], 0)
    y1 = np.maximum(rects[:, 1], 0)
    x2 = np.minimum(rects[:, 0] + rects[:, 2], size[0])
    y2 = np.minimum(rects[:, 1] + rects[:, 3], size[1])
    keep = (x2 > x1) & (y2 > y1) & (rects[:, 2] > 0) & (rects[:, 3] > 0)
    return np.stack([x1, y1, x2, y2], 1).astype(np.float64), keep


def detect_multiscale(image: np.ndarray, weights: np.ndarray, bias: float, params: HOGParams, *,
                      hit_threshold: float = 0.0, win_stride: tuple[int, int] | None = None,
                      padding: tuple[int, int] = (0, 0), scale: float = 1.05, group_threshold: int = 2,
                      nlevels: int = 64, grouping: str = "opencv", nms_iou: float = 0.45
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Objects found by one linear SVM over a HOG pyramid: `cv2.HOGDescriptor.detectMultiScale`.

    Args:
        image: uint8 (H, W) or (H, W, 3); pass BGR to reproduce OpenCV bit for bit (see `hog_blocks`).
        weights: (D,) SVM weights in OpenCV's descriptor order (OpenCV's detector vectors are weights
            followed by the bias: `weights=v[:-1], bias=v[-1]`).
        bias: The SVM's constant term.
        params: Descriptor geometry (its `win_size` is the detection window).
        hit_threshold, win_stride, padding, scale, group_threshold, nlevels: as OpenCV's (module docstring);
            `win_stride` None means the block stride, as in OpenCV's detectMultiScale.
        grouping: "opencv" (OpenCV's rectangle grouping), "nms" (non-maximum suppression at `nms_iou`,
            `group_threshold` unused) or "none" (every hit).

    Returns:
        boxes (N, 4) float64 xyxy in image pixels, clipped to the image, and their SVM margins (N,) float64
        (a group's best member's), highest first.
    """
    if grouping not in ("opencv", "nms", "none"):
        raise ValueError(f"detect_multiscale: grouping must be 'opencv', 'nms' or 'none', got {grouping!r}")
    weights = np.asarray(weights, np.float32).reshape(1, -1)
    if weights.shape[1] != params.descriptor_size:
        raise ValueError(f"detect_multiscale: {weights.shape[1]} SVM weights, the descriptor of {params} has "
                         f"{params.descriptor_size}")
    rects, margins, _ = pyramid_hits(image, weights, np.array([float(bias)]), params,
                                     hit_threshold=hit_threshold, win_stride=win_stride, padding=padding,
                                     scale=scale, nlevels=nlevels)
    if grouping == "opencv":
        rects, margins = group_rectangles(rects, margins, int(group_threshold))
    boxes, keep = clip_rectangles(rects, (image.shape[1], image.shape[0]))
    boxes, margins = boxes[keep], margins[keep]
    if grouping == "nms" and len(boxes):
        kept = batched_nms(torch.from_numpy(boxes), torch.from_numpy(margins), torch.zeros(len(boxes)),
                           nms_iou).numpy()
        boxes, margins = boxes[kept], margins[kept]
    order = np.argsort(-margins, kind="stable")
    return boxes[order], margins[order]
