"""The picture of `ninshiki compare`: accuracy against training time and against CPU speed, one point per
model, classical and deep methods in two colours."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ninshiki.viz._render import new_figure, save_figure

_COLOURS = {"classical": "#d95f02", "deep": "#1b9e77"}
_LABELS = {"top1": "top-1 accuracy", "map50": "mAP@.5", "map": "mAP@[.5:.95]"}


def save_comparison_plot(rows: list[dict[str, Any]], score: str, path: str | os.PathLike[str]) -> Path:
    """Two panels: `score` against training seconds, and against CPU images/s (both log scale)."""
    figure = new_figure(10, 4)
    axes = figure.subplots(1, 2)
    for ax, column, label in ((axes[0], "train_s", "training time (s)"),
                              (axes[1], "cpu_images_per_s", "CPU images / s")):
        for kind, colour in _COLOURS.items():
            points = [r for r in rows if r["kind"] == kind and r[column] > 0]
            ax.scatter([r[column] for r in points], [r[score] for r in points], color=colour, label=kind, s=36)
            for r in points:
                ax.annotate(r["model"], (r[column], r[score]), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel(_LABELS.get(score, score))
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right", fontsize=8)
    return save_figure(figure, path)
