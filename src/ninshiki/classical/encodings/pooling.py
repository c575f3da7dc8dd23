"""What every encoding shares: batches of images with different descriptor counts as padded arrays, spatial
pyramid cells, and the final normalisations.

Encodings pool per-descriptor weights (hard or soft assignments, GMM posteriors) over the descriptors of an
image, or of a cell of its spatial pyramid (Lazebnik, Schmid and Ponce, "Beyond Bags of Features", CVPR 2006).
With images padded to the same descriptor count (padding weighted 0) and pyramid cells as one-hot columns,
every sum over descriptors is one batched matrix product: no loop over descriptors or cells.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from tqdm import tqdm

ImageSize = tuple[int, int] | Sequence[tuple[int, int]]


def pad_batch(arrays: Sequence[np.ndarray], dtype: type = np.float64) -> tuple[np.ndarray, np.ndarray]:
    """Stack per-image arrays with different row counts, zero-padded, with a mask of the real rows.

    Shape:
        - arrays: n arrays (M_i, D).
        - Output: padded (n, M, D) of `dtype`, M = max M_i (at least 1); mask (n, M) of `dtype`, 1 on real rows.
    """
    n, dim = len(arrays), arrays[0].shape[1]
    rows = max(1, max(len(a) for a in arrays))
    padded = np.zeros((n, rows, dim), dtype)                         # (n, M, D)
    mask = np.zeros((n, rows), dtype)                                # (n, M)
    for i, a in enumerate(arrays):
        padded[i, : len(a)] = a
        mask[i, : len(a)] = 1
    return padded, mask


def num_cells(pyramid: Sequence[int]) -> int:
    """Cells of a spatial pyramid whose levels split the image into g x g cells for each g in `pyramid`."""
    if not pyramid or any(int(g) != g or g < 1 for g in pyramid):
        raise ValueError(f"pyramid must list grid sizes >= 1, e.g. (1,) or (1, 2); got {pyramid}")
    return sum(int(g) ** 2 for g in pyramid)


def pyramid_cells(xy: Sequence[np.ndarray], image_size: ImageSize, pyramid: Sequence[int],
                  rows: int) -> np.ndarray:
    """One-hot membership of each descriptor in the cells of every pyramid level (levels concatenated).

    Level g splits the image into g x g cells, numbered row by row; a descriptor at (x, y) lies in column
    floor((x + 0.5) / W * g) (pixel centres at integers), clipped to the image.

    Shape:
        - xy: n arrays (M_i, 2) of (x, y) pixel positions; image_size: (H, W) for all, or n of them.
        - Output: (n, rows, C) float64 with C = sum(g * g), rows >= max M_i (padding rows are in no cell).
    """
    sizes = _sizes(image_size, len(xy))
    total = num_cells(pyramid)
    cells = np.zeros((len(xy), rows, total))                         # (n, rows, C)
    for i, (points, (height, width)) in enumerate(zip(xy, sizes)):
        points = np.asarray(points, np.float64)
        offset = 0
        for g in pyramid:
            col = np.clip(np.floor((points[:, 0] + 0.5) / width * g), 0, g - 1).astype(np.int64)   # (M_i,)
            row = np.clip(np.floor((points[:, 1] + 0.5) / height * g), 0, g - 1).astype(np.int64)  # (M_i,)
            cells[i, np.arange(len(points)), offset + row * g + col] = 1
            offset += g * g
    return cells


def _sizes(image_size: ImageSize, n: int) -> list[tuple[int, int]]:
    if image_size is None:
        raise ValueError("a spatial pyramid needs image_size (H, W) and the descriptors' xy")
    if len(image_size) == 2 and np.isscalar(image_size[0]):
        return [tuple(image_size)] * n                              # type: ignore[list-item]
    if len(image_size) != n:
        raise ValueError(f"image_size lists {len(image_size)} sizes for {n} images")
    return [tuple(s) for s in image_size]                           # type: ignore[misc]


def cell_weights(xy: Sequence[np.ndarray] | None, image_size: ImageSize | None, pyramid: Sequence[int],
                 mask: np.ndarray) -> np.ndarray:
    """Mask times pyramid membership: (n, M) mask -> (n, M, C) weights; (1,) needs no positions."""
    if tuple(pyramid) == (1,):
        return mask[:, :, None]                                      # (n, M, 1)
    if xy is None:
        raise ValueError("a spatial pyramid needs the descriptors' xy")
    return pyramid_cells(xy, image_size, pyramid, mask.shape[1]) * mask[:, :, None]   # (n, M, C)


def chunked(n: int, chunk: int, *, progress: bool, desc: str) -> Iterator[slice]:
    """Slices of `chunk` images over range(n), with a progress bar counting images."""
    with tqdm(total=n, desc=desc, unit="img", disable=not progress, leave=False) as bar:
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            yield slice(start, stop)
            bar.update(stop - start)


def power_l2(vectors: np.ndarray, power: float = 0.5, eps: float = 1e-12) -> np.ndarray:
    """Signed power normalisation sign(z)|z|^power, then L2 normalisation of each row (zero rows stay zero).

    Shape:
        vectors: (N, F) -> (N, F) float32.
    """
    if not 0 < power <= 1:
        raise ValueError(f"power must be in (0, 1] (1 disables it); got {power}")
    out = np.sign(vectors) * np.abs(vectors) ** power if power != 1 else np.asarray(vectors, np.float64)
    norm = np.linalg.norm(out, axis=1, keepdims=True)               # (N, 1)
    return (out / np.maximum(norm, eps)).astype(np.float32)


def check_descriptors(descriptors: Sequence[np.ndarray], dim: int, what: str) -> None:
    """Clear errors for an empty batch or descriptors of the wrong width."""
    if len(descriptors) == 0:
        raise ValueError(f"{what}: no images to encode")
    for i, d in enumerate(descriptors):
        if d.ndim != 2 or d.shape[1] != dim:
            raise ValueError(f"{what}: image {i} has descriptors of shape {d.shape}; the model's are (M, {dim})")
