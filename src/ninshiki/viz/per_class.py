"""Per-class recall and precision as horizontal bars."""
from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ninshiki.viz._render import new_figure, save_figure


def save_per_class_bars(table: Sequence[Mapping[str, object]], path: str | os.PathLike[str], *,
                        max_classes: int = 50, title: str = "") -> Path:
    """Draw recall and precision of every class as paired horizontal bars.

    Args:
        table: rows with ``class``, ``recall`` and ``precision`` keys, e.g.
            `ClassificationMetric.per_class_table()`.
        path: the PNG to write (atomically).
        max_classes: with more classes than this, only the `max_classes` of lowest recall are drawn
            (the ones worth looking at), worst first.
        title: figure title.

    Returns:
        The path written: an RGB image 8 inches wide, 1.5 + 0.5 * ceil(n / 2) inches high at 100 dpi
        for the n classes drawn.
    """
    if not table:
        raise ValueError("table is empty")
    missing = {"class", "recall", "precision"} - set(table[0])
    if missing:
        raise ValueError(f"table rows need the keys class, recall and precision; missing {sorted(missing)}")
    rows = sorted(table, key=lambda r: float(r["recall"]))[:max_classes] if len(table) > max_classes else table
    y = np.arange(len(rows))
    figure = new_figure(8.0, 1.5 + 0.5 * math.ceil(len(rows) / 2))
    ax = figure.add_subplot()
    ax.barh(y - 0.2, [float(r["recall"]) for r in rows], height=0.4, label="recall")
    ax.barh(y + 0.2, [float(r["precision"]) for r in rows], height=0.4, label="precision")
    ax.set_yticks(y, labels=[str(r["class"]) for r in rows], fontsize=8)
    ax.invert_yaxis()  # first class at the top
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("fraction")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title)
    return save_figure(figure, path)
