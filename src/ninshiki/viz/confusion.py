"""Confusion matrices as a heatmap PNG and as a CSV table."""
from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from torch import Tensor

from ninshiki.io import atomic_path
from ninshiki.viz._render import new_figure, save_figure

MAX_ANNOTATED = 20    # write the value in every cell up to this many classes
MAX_TICK_LABELS = 60  # beyond this many classes names overlap; the axes are left unlabelled


def _as_matrix(confusion: Tensor | np.ndarray) -> np.ndarray:
    matrix = confusion.detach().cpu().numpy() if isinstance(confusion, Tensor) else np.asarray(confusion)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
        raise ValueError(f"confusion must be a non-empty square (K, K) matrix, got shape {matrix.shape}")
    if not np.issubdtype(matrix.dtype, np.number) or (matrix < 0).any():
        raise ValueError("confusion must hold non-negative numbers")
    return matrix


def _names(class_names: Sequence[str] | None, k: int) -> list[str]:
    names = [str(i) for i in range(k)] if class_names is None else [str(n) for n in class_names]
    if len(names) != k:
        raise ValueError(f"got {len(names)} class names for a {k} x {k} confusion matrix")
    return names


def row_normalize(matrix: np.ndarray) -> np.ndarray:
    """Divide each row by its sum (recall on the diagonal); rows without samples stay 0, not NaN."""
    totals = matrix.sum(axis=1, keepdims=True).astype(np.float64)
    return np.divide(matrix, totals, out=np.zeros(matrix.shape, np.float64), where=totals > 0)


def _annotate(ax: Axes, shown: np.ndarray, normalize: bool, vmax: float) -> None:
    integral = not normalize and np.all(shown == np.round(shown))
    for (row, col), value in np.ndenumerate(shown):
        text = f"{value:.2f}" if normalize else (f"{int(value)}" if integral else f"{value:.3g}")
        color = "white" if value > 0.5 * vmax else "black"  # stay readable on dark cells
        ax.text(col, row, text, ha="center", va="center", color=color, fontsize=8)


def save_confusion_matrix_png(confusion: Tensor | np.ndarray, class_names: Sequence[str] | None,
                              path: str | os.PathLike[str], *, normalize: bool = True, title: str = "") -> Path:
    """Draw a confusion matrix as a heatmap, rows = true class, columns = predicted class.

    Args:
        confusion: counts, e.g. `ClassificationMetric.confusion`.
        class_names: K names for the axes, or None for the indices.
        path: the PNG to write (atomically).
        normalize: show each row divided by its sum (rates, recall on the diagonal) instead of counts.
        title: figure title.

    Returns:
        The path written: an RGB image of (side + 1.5) x side inches at 100 dpi, where
        side = min(4 + 0.5 * ceil(K / 2), 20); values are written in the cells when K <= 20.

    Shape:
        - confusion: (K, K).
    """
    counts = _as_matrix(confusion)
    k = counts.shape[0]
    names = _names(class_names, k)
    shown = row_normalize(counts) if normalize else counts.astype(np.float64)
    side = min(4.0 + 0.5 * math.ceil(k / 2), 20.0)     # inches; grows with K so labels stay legible
    figure = new_figure(side + 1.5, side)              # + room for the colour bar
    ax = figure.add_subplot()
    vmax = 1.0 if normalize else max(float(shown.max()), 1.0)
    image = ax.imshow(shown, cmap="Blues", vmin=0.0, vmax=vmax, interpolation="nearest")
    figure.colorbar(image, ax=ax, shrink=0.8, label="fraction of true class" if normalize else "count")
    if k <= MAX_TICK_LABELS:
        size = 9 if k <= MAX_ANNOTATED else 7
        ax.set_xticks(range(k), labels=names, rotation=45, ha="right", rotation_mode="anchor", fontsize=size)
        ax.set_yticks(range(k), labels=names, fontsize=size)
    else:
        ax.set_xticks([]), ax.set_yticks([])
    if k <= MAX_ANNOTATED:
        _annotate(ax, shown, normalize, vmax)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return save_figure(figure, path)


def save_confusion_matrix_csv(confusion: Tensor | np.ndarray, class_names: Sequence[str] | None,
                              path: str | os.PathLike[str]) -> Path:
    """Write a confusion matrix as CSV: a header row and a first column of class names.

    The top-left cell reads ``true\\predicted``; rows are true classes, columns predicted ones. Integer
    matrices are written as integers, others with full float precision. Returns the path written.
    """
    matrix = _as_matrix(confusion)
    names = _names(class_names, matrix.shape[0])
    integral = np.issubdtype(matrix.dtype, np.integer)
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["true\\predicted", *names])
        for name, row in zip(names, matrix.tolist()):
            writer.writerow([name, *(int(v) if integral else repr(float(v)) for v in row)])
    return Path(path)
