"""The per-pixel and per-block stages of HOG (ninshiki.classical.hog), vectorised over a batch of equally
sized images: OpenCV's gradients and orientation votes, the Gaussian-weighted trilinear block histograms
summed by separable products, and L2-Hys. `hog.py` holds the geometry and the public functions.
"""
from __future__ import annotations

import math
from contextlib import AbstractContextManager
from functools import cache
from typing import TYPE_CHECKING

import cv2
import numpy as np
from threadpoolctl import ThreadpoolController

if TYPE_CHECKING:
    from ninshiki.classical.hog import HOGParams

DENSE_AXIS = 256   # axes up to this length are summed by one dense product (see _block_sums)


@cache
def _blas_controller() -> ThreadpoolController:
    return ThreadpoolController()


def one_blas_thread() -> AbstractContextManager:
    """Run numpy's BLAS on one thread inside the block: OpenBLAS's threads spin-wait, and on shared CPUs the
    tall, skinny products of HOG ran ~10x slower on two threads than on one (and gain little when idle)."""
    return _blas_controller().limit(limits=1, user_api="blas")


def _select(mask: np.ndarray, if_true: np.ndarray, if_false: np.ndarray) -> np.ndarray:
    """`np.where(mask, if_true, if_false)` for float32 arrays, by bit masks: exact and several times faster on
    the unpredictable masks of image gradients (np.where branches per element)."""
    bits = mask.astype(np.int32)
    np.negative(bits, out=bits)                                   # all ones where mask
    low, high = if_false.view(np.int32), if_true.view(np.int32)
    out = np.bitwise_xor(low, high)
    np.bitwise_and(out, bits, out=out)
    np.bitwise_xor(out, low, out=out)
    return out.view(np.float32)


def _derivatives(images: np.ndarray, params: HOGParams, padding: tuple[int, int]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """dx, dy of each padded image, colour reduced as OpenCV does.

    Shape:
        - images: (N, H, W) or (N, H, W, 3) uint8.
        - returns dx, dy: (N, H + 2 py, W + 2 px) float32 each.
    """
    lut = np.arange(256, dtype=np.float32)
    if params.gamma_correction:
        lut = np.sqrt(lut)
    count, height, width = images.shape[:3]
    px, py = padding
    rows, cols = height + 2 * py + 2, width + 2 * px + 2     # one more pixel each side for central differences
    # copyMakeBorder reflects any width, as OpenCV's borderInterpolate does. The images are then stacked into
    # one tall plane per channel, so OpenCV's fast 2-D kernels serve the whole batch.
    padded = np.stack([cv2.copyMakeBorder(image, py + 1, py + 1, px + 1, px + 1, cv2.BORDER_REFLECT_101)
                       for image in images]).reshape(count * rows, cols, -1)           # (N rows, cols, C)
    planes = [cv2.LUT(plane, lut) for plane in (cv2.split(padded) if padded.shape[2] > 1 else [padded[..., 0]])]
    dx, dy = [], []
    for plane in planes:                                                               # (N rows, cols) each
        dx.append(cv2.subtract(plane[:, 2:], plane[:, :-2]).reshape(count, rows, cols - 2)[:, 1:-1])
        below = np.empty_like(plane)                   # row r: plane[r + 2] - plane[r] (last 2 rows unused)
        cv2.subtract(plane[2:], plane[:-2], dst=below[:-2])
        dy.append(below.reshape(count, rows, cols)[:, :-2, 1:-1])
    if len(planes) == 1:
        return dx[0], dy[0]
    # The strongest channel. OpenCV's SIMD loop (4 columns at a time) keeps the lower channel on ties, its
    # scalar tail (the last width % 4 columns) the higher one; both are reproduced, OpenCV's images being BGR.
    m0, m1, m2 = (x * x + y * y for x, y in zip(dx, dy))          # (N, H', W') each
    upper = m2 > m1                                               # channel 2 beats channel 1
    lower = np.maximum(m2, m1) <= m0                              # channel 0 is kept
    tail = ((cols - 2) // 4) * 4
    upper[..., tail:] = m2[..., tail:] >= m1[..., tail:]
    lower[..., tail:] = np.maximum(m2[..., tail:], m1[..., tail:]) < m0[..., tail:]
    return tuple(_select(lower, d[0], _select(upper, d[2], d[1])) for d in (dx, dy))


def _orientation_votes(images: np.ndarray, params: HOGParams, padding: tuple[int, int]) -> np.ndarray:
    """Every pixel's magnitude split between its two nearest orientation bins.

    Shape:
        - images: (N, H, W) or (N, H, W, 3) uint8.
        - returns (N, nbins, H + 2 py, W + 2 px) float32.
    """
    dx, dy = _derivatives(images, params, padding)
    count, height, width = dx.shape
    # OpenCV's own magnitude and fastAtan2 (radians in [0, 2 pi)), as its HOG calls them
    mag, angle = cv2.cartToPolar(np.ascontiguousarray(dx).reshape(count * height, width),
                                 np.ascontiguousarray(dy).reshape(count * height, width))
    nbins = params.nbins
    scale = nbins / (2 * math.pi) if params.signed else nbins / math.pi
    angle = angle * np.float32(scale) - np.float32(0.5)         # in [-0.5, 2 nbins - 0.5)
    low = np.floor(angle)
    frac = angle - low
    # bins wrap around: floor + 1 in [0, 2 nbins] indexes small tables of the two bins (nbins <= 127)
    index = (low + np.float32(1)).astype(np.uint8).reshape(count, -1)
    pixels = height * width
    # flat positions in the (N, nbins, H' W') votes: image n, bin b, pixel p -> (n nbins + b) H' W' + p
    base = (np.arange(count) * (nbins * pixels))[:, None] + np.arange(pixels)      # (N, H' W')
    wrapped = (np.arange(-1, 2 * nbins) % nbins) * pixels                           # (2 nbins + 1,)
    votes = np.zeros(count * nbins * pixels, np.float32)
    votes[(base + np.take(wrapped, index)).ravel()] = (mag * (np.float32(1) - frac)).ravel()
    # With one bin both votes land in it, and OpenCV's block loop stores both sums computed from the same old
    # value, so only the second vote, mag * frac, survives; assigning the second after the first reproduces it.
    votes[(base + np.take((wrapped + pixels) % (nbins * pixels), index)).ravel()] = (mag * frac).ravel()
    return votes.reshape(count, nbins, height, width)


def _axis_weights(block: int, cell: int, sigma: float) -> np.ndarray:
    """Per block pixel along one axis: Gaussian factor times its bilinear share of each cell.

    Shape:
        returns (block, cells) float32; the 2-D weight is the outer product of the two axes' (OpenCV
        multiplies exp(-(di^2 + dj^2) / (2 sigma^2)) by the product of the two shares: the same numbers).
    """
    cells = block // cell
    pos = (np.arange(block, dtype=np.float32) + np.float32(0.5)) / np.float32(cell) - np.float32(0.5)
    first = np.floor(pos)
    frac = pos - first                                           # share of the cell after `first`
    weights = np.zeros((block, cells), np.float32)
    rows = np.arange(block)
    for cell_index, share in ((first, np.float32(1) - frac), (first + 1, frac)):
        valid = (cell_index >= 0) & (cell_index < cells)
        weights[rows[valid], cell_index[valid].astype(np.int64)] = share[valid]
    offset = np.arange(block, dtype=np.float32) - np.float32(block * 0.5)
    scale = np.float32(0.0) if math.isinf(sigma) else np.float32(1.0) / (np.float32(sigma) ** 2 * np.float32(2))
    gauss = np.exp(-(offset * offset) * scale).astype(np.float32)
    return weights * gauss[:, None]


def _l2hys(blocks: np.ndarray, threshold: float) -> np.ndarray:
    """OpenCV's L2-Hys over the last axis (float32, its epsilons)."""
    size = blocks.shape[-1]
    norm = np.sqrt(np.einsum("...i,...i->...", blocks, blocks, dtype=np.float32))
    blocks = np.minimum(blocks * (np.float32(1) / (norm + np.float32(size * 0.1)))[..., None],
                        np.float32(threshold))
    norm = np.sqrt(np.einsum("...i,...i->...", blocks, blocks, dtype=np.float32))
    return blocks * (np.float32(1) / (norm + np.float32(1e-3)))[..., None]


def check_images(images: np.ndarray, batch: bool) -> None:
    """Raise a clear ValueError unless `images` is one uint8 image (batch False) or a stack of them."""
    shapes = "(N, H, W) or (N, H, W, 3)" if batch else "(H, W) or (H, W, 3)"
    ndim = images.ndim - batch
    if images.dtype != np.uint8 or ndim not in (2, 3) or (ndim == 3 and images.shape[-1] != 3):
        raise ValueError(f"hog: images must be uint8 {shapes}, got {images.dtype} {images.shape}")
    if min(images.shape[batch:batch + 2]) < 1:
        raise ValueError(f"hog: empty image {images.shape}")


def block_histograms(images: np.ndarray, params: HOGParams, stride: tuple[int, int], padding: tuple[int, int]
                     ) -> np.ndarray:
    """Every normalised block of each image of a batch, on a grid of `stride` (x, y) starting at -padding.

    Shape:
        - images: (N, H, W) or (N, H, W, 3) uint8, equally sized.
        - returns (N, By, Bx, block_dim) float32; block_dim lists cells column by column, then bins.
    """
    (bw, bh), (cw, ch) = params.block_size, params.cell_size
    height, width = images.shape[1] + 2 * padding[1], images.shape[2] + 2 * padding[0]
    if height < bh or width < bw:
        return np.zeros((len(images), 0, 0, params.block_dim), np.float32)
    votes = _orientation_votes(images, params, padding)                       # (N, nbins, H', W')
    wx = _axis_weights(bw, cw, params.sigma)                                  # (bw, ncx)
    wy = _axis_weights(bh, ch, params.sigma)                                  # (bh, ncy)
    with one_blas_thread():
        rows = _block_sums(votes, wx, stride[0])                              # (N, nbins, H', Bx, ncx)
        cells = _block_sums(rows.transpose(0, 1, 3, 4, 2), wy, stride[1])    # (N, nbins, Bx, ncx, By, ncy)
    blocks = cells.transpose(0, 4, 2, 3, 5, 1)                                # (N, By, Bx, ncx, ncy, nbins)
    blocks = blocks.reshape(len(images), cells.shape[4], cells.shape[2], params.block_dim)
    return _l2hys(blocks, params.l2hys_threshold)


def _block_sums(values: np.ndarray, weights: np.ndarray, stride: int) -> np.ndarray:
    """Weighted sums over blocks along the last axis: out[..., b, c] = sum_j weights[j, c] values[..., b s + j].

    Short axes (windows, small images) use one product with the dense (L, B * cells) matrix of the map. Long
    ones (whole images) cut the axis into chunks of g = gcd(block, stride) samples: a block is block / g
    consecutive chunks, one product gives every chunk's part for each position k a chunk can take in a
    block, and each block adds its chunks' parts.

    Shape:
        - values: (..., L); weights: (block, cells).
        - returns (..., B, cells), B = (L - block) // stride + 1.
    """
    (block, cells), length = weights.shape, values.shape[-1]
    lead = values.shape[:-1]
    count = (length - block) // stride + 1
    if length <= DENSE_AXIS:
        matrix = np.zeros((length, count, cells), np.float32)
        for b in range(count):
            matrix[b * stride: b * stride + block, b] = weights
        return (values.reshape(-1, length) @ matrix.reshape(length, -1)).reshape(*lead, count, cells)
    g = math.gcd(block, stride)
    used = (count - 1) * stride + block
    chunks = np.ascontiguousarray(values[..., :used]).reshape(-1, g)               # (M used / g, g)
    positions = block // g                                                        # kernel: [t, k c] = w[k g + t, c]
    kernel = weights.reshape(positions, g, cells).transpose(1, 0, 2).reshape(g, positions * cells)
    parts = (chunks @ kernel).reshape(*lead, used // g, positions, cells)
    step = stride // g
    out = parts[..., 0: (count - 1) * step + 1: step, 0, :].copy()
    for k in range(1, positions):
        out += parts[..., k: k + (count - 1) * step + 1: step, k, :]
    return out                                                                    # (..., B, cells)
