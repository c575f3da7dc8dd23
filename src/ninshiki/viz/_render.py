"""Shared plumbing of the figures: pyplot-free Agg figures and atomic PNG writes.

Figures are `matplotlib.figure.Figure` objects on an explicit `FigureCanvasAgg`, never made through
`matplotlib.pyplot`: drawing here neither selects a backend for the user's process nor leaves figures in
pyplot's global registry, and it works in threads and on headless machines.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from ninshiki.io import atomic_path

DPI = 100  # figure sizes below are multiples of 0.5 inch, so pixel sizes are exact


def new_figure(width: float, height: float) -> Figure:
    """A white figure of `width` x `height` inches (at `DPI`) with constrained layout, on an Agg canvas."""
    figure = Figure(figsize=(width, height), dpi=DPI, facecolor="white", layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def figure_to_rgb(figure: Figure) -> np.ndarray:
    """Render a figure made by `new_figure`.

    Shape:
        - Output: (H, W, 3) uint8, H = height * DPI, W = width * DPI.
    """
    canvas = figure.canvas
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()  # opaque white background: alpha carries nothing


def save_png(image: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Write an (H, W, 3) or (H, W) uint8 array as a PNG, atomically. Returns the path."""
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"expected a uint8 (H, W) or (H, W, 3) image, got {image.dtype} {image.shape}")
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")
    return Path(path)


def save_figure(figure: Figure, path: str | os.PathLike[str]) -> Path:
    """Render a figure to an RGB PNG, atomically. Returns the path."""
    return save_png(figure_to_rgb(figure), path)
