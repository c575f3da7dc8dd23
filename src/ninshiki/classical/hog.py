"""Histograms of Oriented Gradients: Dalal and Triggs, "Histograms of oriented gradients for human detection",
CVPR 2005, computed exactly as OpenCV's `cv::HOGDescriptor` computes them.

Per pixel: central differences [-1, 0, 1] of the (optionally square-rooted, "gamma corrected") intensities,
BORDER_REFLECT_101 at the image edges (so the derivative across an edge is 0); for colour images the channel
with the largest gradient magnitude. The orientation (OpenCV's `fastAtan2` polynomial, unsigned: modulo 180
degrees) votes bilinearly into the two nearest of `nbins` bins centred at (i + 0.5) * 180 / nbins degrees.
Per block: every pixel's vote is weighted by a Gaussian centred on the block (sigma `win_sigma`) and shared
bilinearly in space between the (up to four) nearest cell centres of the block (trilinear interpolation);
the block histogram is L2-Hys normalised: v / (||v|| + 0.1 * len(v)), clipped at `l2hys_threshold`, then
v / (||v|| + 1e-3). A window's descriptor lists its blocks column by column (x outer, y inner), and inside a
block the cells column by column, then the bins: OpenCV's order, so its SVM coefficients apply unchanged.

The arithmetic follows OpenCV's vectorised code in float32 (magnitudes and angles come from OpenCV's own
`cartToPolar`, as in its HOG), so descriptors agree with `cv2.HOGDescriptor.compute` to ~2e-7, including its
quirks: the channel kept on ties between equally strong colour channels, and with one bin only the second
vote counted. One quirk is not reproduced: OpenCV's vectorised normalisation keeps the L2-Hys threshold of
the first call in a `static` variable, so a process that used 0.2 once clips at 0.2 whatever later
descriptors ask for; here every call uses its own.

scikit-image's `skimage.feature.hog` is the other common implementation. Its conventions agree with these
(gradients by central differences, 0 at the borders, the max-magnitude channel, unsigned angles
`arctan2(d_row, d_col)`, bins centred at (i + 0.5) * 180 / nbins), but it computes a different quantity on
natural images: each pixel votes for ONE orientation bin and ONE cell (no orientation or spatial interpolation),
with no Gaussian window, cells hold means rather than sums, blocks always step by one cell, and L2-Hys divides
by sqrt(||v||^2 + 1e-10) instead of adding 0.1 * len(v) and 1e-3. The two agree only where interpolation
and weighting cannot matter: a region of one orientation at a bin centre and one magnitude
(tests/classical/test_hog.py checks that case).

`hog_blocks` computes every block of a whole image once, on a grid; windows are then gathered from it
(`window_descriptors`) or scored by one correlation with the SVM weights (ninshiki.classical.hog_detect),
which is what makes dense sliding windows affordable. `hog_batch` computes many window-sized images at once.
The per-pixel and per-block stages live in ninshiki.classical.hog_histograms.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from ninshiki.classical.hog_histograms import block_histograms, check_images, one_blas_thread

__all__ = ["HOGParams", "align_padding", "gather_windows", "hog_batch", "hog_blocks", "hog_descriptor",
           "hog_windows", "one_blas_thread", "window_descriptors", "window_grid"]

@dataclass(frozen=True)
class HOGParams:
    """The geometry of a HOG descriptor, in OpenCV's terms; sizes are (width, height) in pixels.

    `win_sigma` <= 0 means OpenCV's default (block_w + block_h) / 8; `math.inf` turns the Gaussian block
    weighting off. `gamma_correction` takes square roots of the intensities first (OpenCV's argument-less
    constructor turns it on, its long constructor defaults it to off). `signed` bins 0-360 degrees.
    """
    win_size: tuple[int, int] = (64, 128)
    block_size: tuple[int, int] = (16, 16)
    block_stride: tuple[int, int] = (8, 8)
    cell_size: tuple[int, int] = (8, 8)
    nbins: int = 9
    win_sigma: float = -1.0
    l2hys_threshold: float = 0.2
    gamma_correction: bool = True
    signed: bool = False

    def __post_init__(self) -> None:
        for name in ("win_size", "block_size", "block_stride", "cell_size"):
            value = getattr(self, name)
            if len(value) != 2 or min(value) < 1:
                raise ValueError(f"HOGParams: {name} must be two positive ints (width, height), got {value}")
        for axis, label in ((0, "width"), (1, "height")):
            win, block = self.win_size[axis], self.block_size[axis]
            if block % self.cell_size[axis] or win < block or (win - block) % self.block_stride[axis]:
                raise ValueError(
                    f"HOGParams: block {label} {block} must be a multiple of the cell {label} "
                    f"{self.cell_size[axis]}, and window {label} {win} minus the block {label} a multiple of "
                    f"the block stride {self.block_stride[axis]}")
        if not 1 <= self.nbins <= 127:
            raise ValueError(f"HOGParams: nbins must be in 1..127, got {self.nbins}")

    @property
    def cells_per_block(self) -> tuple[int, int]:
        return self.block_size[0] // self.cell_size[0], self.block_size[1] // self.cell_size[1]

    @property
    def blocks_per_window(self) -> tuple[int, int]:
        """(nx, ny) blocks in one window."""
        return tuple((w - b) // s + 1 for w, b, s in zip(self.win_size, self.block_size, self.block_stride))

    @property
    def block_dim(self) -> int:
        ncx, ncy = self.cells_per_block
        return ncx * ncy * self.nbins

    @property
    def descriptor_size(self) -> int:
        nx, ny = self.blocks_per_window
        return nx * ny * self.block_dim

    @property
    def sigma(self) -> float:
        """The Gaussian block window's sigma, as OpenCV's `getWinSigma`."""
        return self.win_sigma if self.win_sigma > 0 else (self.block_size[0] + self.block_size[1]) / 8.0

    def as_array(self) -> np.ndarray:
        """The parameters as 13 float64 numbers (for weights files); `from_array` reads them back."""
        return np.array([*self.win_size, *self.block_size, *self.block_stride, *self.cell_size, self.nbins,
                         self.win_sigma, self.l2hys_threshold, self.gamma_correction, self.signed], np.float64)

    @classmethod
    def from_array(cls, values: np.ndarray) -> HOGParams:
        """The parameters `as_array` wrote."""
        v = [float(x) for x in np.asarray(values, np.float64).ravel()]
        if len(v) != 13:
            raise ValueError(f"HOGParams.from_array: expected 13 numbers, got {len(v)}")
        pairs = [(int(v[i]), int(v[i + 1])) for i in range(0, 8, 2)]
        return cls(*pairs, nbins=int(v[8]), win_sigma=v[9], l2hys_threshold=v[10], gamma_correction=bool(v[11]),
                   signed=bool(v[12]))

    def to_opencv(self) -> cv2.HOGDescriptor:
        """The equal `cv2.HOGDescriptor` (for references and tests)."""
        return cv2.HOGDescriptor(self.win_size, self.block_size, self.block_stride, self.cell_size, self.nbins, 1,
                                 float(self.win_sigma), cv2.HOGDescriptor_L2Hys, self.l2hys_threshold,
                                 self.gamma_correction, cv2.HOGDescriptor_DEFAULT_NLEVELS, self.signed)


def hog_blocks(image: np.ndarray, params: HOGParams, *, stride: tuple[int, int] | None = None,
               padding: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Every normalised block of an image, on a grid: computed once, shared by all windows.

    Block (i, j) has its top-left corner at (j * stride_x - padding_x, i * stride_y - padding_y) in image
    pixels; the padding is filled by reflecting the image (BORDER_REFLECT_101), as OpenCV pads.

    Args:
        image: uint8, (H, W) gray or (H, W, 3) colour (OpenCV's channel order breaks ties between
            equally strong channels: pass BGR to reproduce OpenCV's numbers bit for bit).
        params: Descriptor geometry.
        stride: Grid step (x, y), default the block stride.
        padding: (x, y) pixels added on each side.

    Shape:
        returns (By, Bx, block_dim) float32; block_dim lists cells column by column, then bins.
    """
    check_images(image, batch=False)
    return block_histograms(image[None], params, stride or params.block_stride, padding)[0]


def hog_batch(images: np.ndarray, params: HOGParams, *, batch_size: int = 256) -> np.ndarray:
    """Descriptors of many window-sized images at once (each as `hog_descriptor` computes it).

    Args:
        images: uint8 (N, h, w) or (N, h, w, 3) with (w, h) == params.win_size.
        params: Descriptor geometry.
        batch_size: Images per vectorised step (memory: ~40 * nbins bytes per pixel of a step).

    Shape:
        returns (N, D) float32.
    """
    check_images(images, batch=True)
    if tuple(images.shape[2:0:-1]) != tuple(params.win_size):
        raise ValueError(f"hog: images are {images.shape[2]}x{images.shape[1]} (w x h), the window "
                         f"{params.win_size[0]}x{params.win_size[1]}; use hog_blocks + window_descriptors "
                         "for larger images")
    out = np.empty((len(images), params.descriptor_size), np.float32)
    for start in range(0, len(images), batch_size):
        blocks = block_histograms(images[start:start + batch_size], params, params.block_stride, (0, 0))
        out[start:start + batch_size] = blocks.transpose(0, 2, 1, 3).reshape(len(blocks), -1)  # x outer, y inner
    return out


def _window_geometry(params: HOGParams, grid_stride: tuple[int, int] | None, win_stride: tuple[int, int] | None
                     ) -> tuple[int, int, int, int]:
    """(kx, ky, tx, ty): grid steps between a window's blocks and between windows."""
    gx, gy = grid_stride or params.block_stride
    wsx, wsy = win_stride or params.block_stride
    bsx, bsy = params.block_stride
    if bsx % gx or bsy % gy or wsx % gx or wsy % gy:
        raise ValueError(f"hog: block stride {params.block_stride} and window stride {(wsx, wsy)} must be "
                         f"multiples of the grid stride {(gx, gy)}")
    return bsx // gx, bsy // gy, wsx // gx, wsy // gy


def window_grid(blocks: np.ndarray, params: HOGParams, *, grid_stride: tuple[int, int] | None = None,
                win_stride: tuple[int, int] | None = None) -> tuple[int, int]:
    """(Ny, Nx): how many windows a block grid holds (0 when it is smaller than a window)."""
    kx, ky, tx, ty = _window_geometry(params, grid_stride, win_stride)
    nbx, nby = params.blocks_per_window
    grid_y, grid_x = blocks.shape[:2]
    return max(0, (grid_y - (nby - 1) * ky - 1) // ty + 1), max(0, (grid_x - (nbx - 1) * kx - 1) // tx + 1)


def gather_windows(blocks: np.ndarray, params: HOGParams, rows: np.ndarray, cols: np.ndarray, *,
                   grid_stride: tuple[int, int] | None = None, win_stride: tuple[int, int] | None = None
                   ) -> np.ndarray:
    """Descriptors of chosen windows of a block grid, in OpenCV's order (blocks x outer, y inner).

    Shape:
        - rows, cols: (N,) window indices (window (i, j) starts at block (i * win_y / grid_y, j * win_x / grid_x)).
        - returns (N, D) float32.
    """
    kx, ky, tx, ty = _window_geometry(params, grid_stride, win_stride)
    nbx, nby = params.blocks_per_window
    iy = (np.asarray(rows) * ty)[:, None, None] + (np.arange(nby) * ky)[None, None, :]   # (N, 1, nby)
    ix = (np.asarray(cols) * tx)[:, None, None] + (np.arange(nbx) * kx)[None, :, None]   # (N, nbx, 1)
    return blocks[iy, ix].reshape(len(iy), params.descriptor_size)


def window_descriptors(blocks: np.ndarray, params: HOGParams, *, grid_stride: tuple[int, int] | None = None,
                       win_stride: tuple[int, int] | None = None) -> np.ndarray:
    """Descriptors of all windows of a block grid, each in OpenCV's order.

    Args:
        blocks: `hog_blocks` output on a grid of step `grid_stride` (default the block stride).
        params: Descriptor geometry.
        grid_stride: The grid's step (x, y); the block stride and `win_stride` must be multiples of it.
        win_stride: Window step (x, y), default the block stride.

    Shape:
        returns (Ny, Nx, D) float32: window (i, j) starts at block (i * win_stride_y / grid_y, ...).
    """
    ny, nx = window_grid(blocks, params, grid_stride=grid_stride, win_stride=win_stride)
    rows, cols = np.divmod(np.arange(ny * nx), max(nx, 1))
    descriptors = gather_windows(blocks, params, rows, cols, grid_stride=grid_stride, win_stride=win_stride)
    return descriptors.reshape(ny, nx, params.descriptor_size)


def align_padding(padding: int, step: int) -> int:
    """OpenCV's `alignSize(max(padding, 0), step)`: `(p + step - 1) & -step`, the next multiple of `step` when
    it is a power of two (other steps give what OpenCV gives, e.g. 5 -> 8 for step 6)."""
    return (max(padding, 0) + step - 1) & -step


def hog_descriptor(image: np.ndarray, params: HOGParams = HOGParams()) -> np.ndarray:
    """The HOG descriptor of one window-sized image, equal to `cv2.HOGDescriptor(...).compute(image)`.

    Args:
        image: uint8 (h, w) or (h, w, 3) with (w, h) == params.win_size.
        params: Descriptor geometry.

    Shape:
        returns (D,) float32, D = params.descriptor_size.
    """
    check_images(image, batch=False)
    return hog_batch(image[None], params)[0]


def hog_windows(image: np.ndarray, params: HOGParams, *, win_stride: tuple[int, int] | None = None,
                padding: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Descriptors of every window of an image, as `cv2.HOGDescriptor.compute(image, winStride, padding)`.

    OpenCV's conventions: `win_stride` defaults to the cell size; the padding is aligned to
    gcd(win_stride, block_stride) (`align_padding`); windows start at -padding and step by `win_stride`.

    Shape:
        returns (Ny, Nx, D) float32 (OpenCV returns the same numbers flattened).
    """
    wsx, wsy = win_stride or params.cell_size
    grid = (math.gcd(wsx, params.block_stride[0]), math.gcd(wsy, params.block_stride[1]))
    padding = (align_padding(padding[0], grid[0]), align_padding(padding[1], grid[1]))
    blocks = hog_blocks(image, params, stride=grid, padding=padding)
    return window_descriptors(blocks, params, grid_stride=grid, win_stride=(wsx, wsy))
