"""Pictures of results: confusion matrices, first-layer filters, predictions, training curves.

Everything draws on `matplotlib.figure.Figure` with an explicit Agg canvas (never pyplot, so importing
this package changes no global matplotlib state), and every file is written atomically.
"""
from __future__ import annotations

from ninshiki.viz.confusion import save_confusion_matrix_csv, save_confusion_matrix_png
from ninshiki.viz.curves import save_training_curves
from ninshiki.viz.filters import filter_grid, first_conv, save_filter_grid
from ninshiki.viz.per_class import save_per_class_bars
from ninshiki.viz.predictions import save_prediction_grid

__all__ = [
    "filter_grid",
    "first_conv",
    "save_confusion_matrix_csv",
    "save_confusion_matrix_png",
    "save_filter_grid",
    "save_per_class_bars",
    "save_prediction_grid",
    "save_training_curves",
]
