"""First-layer filter visualisation: the survey's figure of AlexNet's conv1 filters, for any network."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ninshiki.viz._render import save_png

PAD_VALUE = 255  # white separators between filters


def first_conv(model: nn.Module) -> nn.Conv2d:
    """The first `nn.Conv2d` in module registration order (the forward order of Sequential-built networks).

    Raises:
        ValueError: if the model has no initialised Conv2d; the message names the model's class.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            if isinstance(module.weight, nn.parameter.UninitializedParameter):
                raise ValueError(f"{type(model).__name__}'s first Conv2d is lazy and not yet initialised; "
                                 "run one forward pass first")
            return module
    raise ValueError(f"{type(model).__name__} has no nn.Conv2d layer, so it has no first-layer filters to show")


def _normalised_tiles(weight: Tensor) -> np.ndarray:
    """Each filter as an RGB tile in [0, 1], min-max normalised on its own.

    Three input channels are shown as RGB, one as gray; any other count as the gray mean of the first
    (up to) three channels. A constant filter, which has no range to stretch, is mid-gray (0.5).

    Shape:
        - weight: (O, I, kh, kw).
        - Output: (O, kh, kw, 3) float64.
    """
    w = weight.detach().to("cpu", torch.float64).numpy()
    if w.shape[1] != 3:
        w = w[:, :3].mean(axis=1, keepdims=True).repeat(3, axis=1)   # (O, 3, kh, kw), gray
    tiles = w.transpose(0, 2, 3, 1)                                   # (O, kh, kw, 3)
    low = tiles.min(axis=(1, 2, 3), keepdims=True)
    span = tiles.max(axis=(1, 2, 3), keepdims=True) - low
    return np.where(span > 0, (tiles - low) / np.where(span > 0, span, 1.0), 0.5)


def _layout(tiles: np.ndarray, pad: int) -> np.ndarray:
    """Tiles row-major on a near-square grid (ceil(sqrt(O)) columns), `pad` pixels around every tile.

    Shape:
        - tiles: (O, th, tw, 3) uint8.
        - Output: (pad + rows * (th + pad), pad + cols * (tw + pad), 3) uint8.
    """
    count, th, tw, _ = tiles.shape
    cols = math.ceil(math.sqrt(count))
    rows = math.ceil(count / cols)
    grid = np.full((pad + rows * (th + pad), pad + cols * (tw + pad), 3), PAD_VALUE, np.uint8)
    for i, tile in enumerate(tiles):  # one slice copy per filter
        row, col = divmod(i, cols)
        y, x = pad + row * (th + pad), pad + col * (tw + pad)
        grid[y:y + th, x:x + tw] = tile
    return grid


def filter_grid(weight: Tensor, *, upscale: int = 8, pad: int = 1) -> np.ndarray:
    """Lay convolution filters out as one image.

    Filter i goes to row ``i // cols``, column ``i % cols`` of a grid with ``cols = ceil(sqrt(O))``; its
    top-left pixel is at ``(pad + row * (kh * upscale + pad), pad + col * (kw * upscale + pad))``. Each
    filter is min-max normalised on its own (see `_normalised_tiles` for channels), mapped to 0..255 with
    rounding, and enlarged `upscale` times by nearest neighbour so 3x3 or 5x5 kernels stay visible.
    Separators and empty cells are white.

    Args:
        weight: convolution weights.
        upscale: output pixels per kernel pixel, >= 1.
        pad: separator width in output pixels, >= 0.

    Shape:
        - weight: (O, I, kh, kw).
        - Output: (H, W, 3) uint8.
    """
    if weight.ndim != 4 or 0 in weight.shape:
        raise ValueError(f"weight must have shape (O, I, kh, kw) with no empty axis, got {tuple(weight.shape)}")
    if upscale < 1 or pad < 0:
        raise ValueError(f"need upscale >= 1 and pad >= 0, got upscale={upscale}, pad={pad}")
    if not torch.isfinite(weight).all():
        raise ValueError("weight contains NaN or infinity")
    tiles = np.rint(_normalised_tiles(weight) * 255).astype(np.uint8)   # (O, kh, kw, 3)
    tiles = tiles.repeat(upscale, axis=1).repeat(upscale, axis=2)       # (O, kh * up, kw * up, 3)
    return _layout(tiles, pad)


def save_filter_grid(model: nn.Module, path: str | os.PathLike[str], *, upscale: int = 8, pad: int = 1) -> Path:
    """Write the filters of the model's first convolution as a PNG grid (atomically). Returns the path."""
    return save_png(filter_grid(first_conv(model).weight, upscale=upscale, pad=pad), path)
