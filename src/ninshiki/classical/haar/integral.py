"""Integral images (summed-area tables): any rectangle's pixel sum in four look-ups (Viola & Jones, "Rapid object
detection using a boosted cascade of simple features", CVPR 2001, section 2.1), and the 45-degree tilted table of
Lienhart & Maydt ("An extended set of Haar-like features for rapid object detection", ICIP 2002) in OpenCV's layout.

Tables are int64 and exact. OpenCV keeps them in int32 and relies on wrap-around; the differences it takes are the
same numbers as long as a rectangle's true sum fits in 32 bits (always, for Haar windows).

Conventions (OpenCV's): `ii[y, x]` is the sum of `gray[:y, :x]`, so tables are (H + 1, W + 1). A rectangle
`(x, y, w, h)` covers columns x..x+w-1 and rows y..y+h-1. Its sum is `T[p0] - T[p1] - T[p2] + T[p3]` for four
corner points (x, y) of the table that `rect_corners` gives, for upright and tilted rectangles alike.
"""
from __future__ import annotations

import numpy as np


def _as_gray(gray: np.ndarray) -> np.ndarray:
    gray = np.asarray(gray)
    if gray.ndim != 2:
        raise ValueError(f"integral images need one grayscale (H, W) image, got shape {gray.shape}")
    return gray


def integral_images(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The summed-area table of the pixels and of their squares.

    Shape:
        gray: (H, W) integer (uint8 for images).
        returns: ii (H + 1, W + 1) int64 and sq_ii (H + 1, W + 1) int64, first row and column zero.
    """
    gray = _as_gray(gray).astype(np.int64)
    h, w = gray.shape
    ii = np.zeros((h + 1, w + 1), np.int64)      # (H + 1, W + 1)
    sq_ii = np.zeros((h + 1, w + 1), np.int64)   # (H + 1, W + 1)
    np.cumsum(np.cumsum(gray, axis=0), axis=1, out=ii[1:, 1:])
    np.cumsum(np.cumsum(gray * gray, axis=0), axis=1, out=sq_ii[1:, 1:])
    return ii, sq_ii


def tilted_integral(gray: np.ndarray) -> np.ndarray:
    """OpenCV's rotated summed-area table: `T[Y, X] = sum of gray[y, x] over y < Y, |x - X + 1| <= Y - 1 - y`,
    the triangle of pixels above and around (X - 1, Y - 1) (equal to `cv2.integral3`'s third output).

    Each row follows from the two above it: T(X, Y) = T(X-1, Y-1) + T(X+1, Y-1) - T(X, Y-2) + I(X-1, Y-1)
    + I(X-1, Y-2), the two upper triangles overlapping in the one two rows up. The triangles reach past the
    image's sides, so the recursion runs on columns padded by H + 1 on each side (zero pixels there).

    Shape:
        gray: (H, W) integer.
        returns: (H + 1, W + 1) int64.
    """
    gray = _as_gray(gray).astype(np.int64)
    h, w = gray.shape
    pad = h + 1
    img = np.zeros((h, w + 2 * pad + 1), np.int64)   # (H, W + 2H + 3); column c holds pixel x = c - pad
    img[:, pad:pad + w] = gray
    t = np.zeros((h + 1, w + 2 * pad + 1), np.int64)  # (H + 1, W + 2H + 3); column c is X = c - pad
    for y in range(1, h + 1):
        row = t[y]
        row[1:-1] = t[y - 1, :-2] + t[y - 1, 2:] + img[y - 1, :-2]
        if y >= 2:
            row[1:-1] += img[y - 2, :-2] - t[y - 2, 1:-1]
    return np.ascontiguousarray(t[:, pad:pad + w + 1])


def rect_corners(x: np.ndarray | int, y: np.ndarray | int, w: np.ndarray | int, h: np.ndarray | int,
                 tilted: bool | np.ndarray = False) -> np.ndarray:
    """The four table points whose signed sum `T[p0] - T[p1] - T[p2] + T[p3]` is a rectangle's pixel sum.

    Upright (x, y, w, h): (x, y), (x + w, y), (x, y + h), (x + w, y + h). Tilted (OpenCV's CV_TILTED_OFS, the
    rectangle turned 45 degrees about its top corner (x, y), sides w and h running down-right and down-left):
    (x, y), (x - h, y + h), (x + w, y + w), (x + w - h, y + w + h).

    Shape:
        x, y, w, h, tilted: broadcastable arrays (...).
        returns: (..., 4, 2) int64, (x, y) of p0..p3.
    """
    x, y, w, h, tilted = np.broadcast_arrays(*(np.asarray(v) for v in (x, y, w, h, tilted)))
    upright = np.stack([np.stack([x, y], -1), np.stack([x + w, y], -1),
                        np.stack([x, y + h], -1), np.stack([x + w, y + h], -1)], -2)      # (..., 4, 2)
    turned = np.stack([np.stack([x, y], -1), np.stack([x - h, y + h], -1),
                       np.stack([x + w, y + w], -1), np.stack([x + w - h, y + w + h], -1)], -2)  # (..., 4, 2)
    return np.where(tilted.astype(bool)[..., None, None], turned, upright).astype(np.int64)


def rect_sums(ii: np.ndarray, x: np.ndarray | int, y: np.ndarray | int, w: np.ndarray | int,
              h: np.ndarray | int, *, tilted: bool = False) -> np.ndarray:
    """Pixel sums of many rectangles at once (absolute image coordinates), by gathering four table entries each.

    Args:
        ii: the upright table (`integral_images`) or, with `tilted=True`, the tilted one (`tilted_integral`).
        x, y, w, h: rectangles, broadcast together; they must lie inside the image.

    Shape:
        ii: (H + 1, W + 1).
        returns: the broadcast shape of x, y, w, h, dtype of `ii`.
    """
    p = rect_corners(x, y, w, h, tilted)   # (..., 4, 2)
    v = ii[p[..., 1], p[..., 0]]           # (..., 4)
    return v[..., 0] - v[..., 1] - v[..., 2] + v[..., 3]


def window_grid_sums(ii: np.ndarray, corners: np.ndarray, step: int, rows: int, cols: int) -> np.ndarray:
    """One rectangle's pixel sum in every window of a regular grid, by strided slicing (no gathers).

    Windows sit at (step * j, step * i) for i < rows, j < cols; `corners` (from `rect_corners`) are relative
    to a window's top-left corner and every window's rectangle must lie inside the table.

    Shape:
        ii: (H + 1, W + 1); corners: (4, 2) int.
        returns: (rows, cols), dtype of `ii`.
    """
    def grid(px: int, py: int) -> np.ndarray:
        return ii[py:py + step * (rows - 1) + 1:step, px:px + step * (cols - 1) + 1:step]

    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = (tuple(int(v) for v in c) for c in corners)
    return grid(x0, y0) - grid(x1, y1) - grid(x2, y2) + grid(x3, y3)


def difference_tables(ii: np.ndarray, ti: np.ndarray | None, keys: np.ndarray) -> np.ndarray:
    """Integral tables differenced over a rectangle width, so a rectangle's sum takes two look-ups, not four.

    Upright, width w: D[y, x] = ii[y, x + w] - ii[y, x] (columns x..x+w-1 of the rows above y), and the sum of
    (x, y, w, h) is D[y + h, x] - D[y, x]. Tilted: E[y, x] = T[y, x] - T[y + w, x + w], and OpenCV's four tilted
    corners p0 - p1 - p2 + p3 become E[y, x] - E[y + h, x - h]. Entries without meaning stay 0. Values are
    bounded by 255 (H + 1) (2 w + 1), so the tables are int32 (they wrap around as OpenCV's int32 integral images
    do, and the differences taken within that bound come out exact) unless an image is huge.

    Args:
        ii: the upright table; ti: the tilted one (needed only when `keys` has tilted rows).
        keys: rows [tilted, width], one table each.

    Shape:
        ii, ti: (H + 1, W + 1) int64; keys: (K, 2) int.
        returns: (K, H + 1, W + 1) int32 (or int64).
    """
    th, tw = ii.shape
    dtype = np.int32 if 255 * th * (2 * int(np.max(keys[:, 1])) + 1) < 2 ** 31 else np.int64
    out = np.zeros((len(keys), th, tw), dtype)   # (K, H + 1, W + 1)
    ii = ii.astype(dtype)
    ti = ti.astype(dtype) if ti is not None else None
    for k, (tilted, w) in enumerate(np.asarray(keys, np.int64)):
        if tilted:
            np.subtract(ti[:th - w, :tw - w], ti[w:, w:], out=out[k, :th - w, :tw - w])
        else:
            np.subtract(ii[:, w:], ii[:, :tw - w], out=out[k, :, :tw - w])
    return out
