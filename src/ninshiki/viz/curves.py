"""Training curves from the per-epoch CSV log: loss in one panel, accuracy in the other."""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator

from ninshiki.viz._render import new_figure, save_figure

LOSS_COLUMNS = ("train_loss", "val_loss")
ACCURACY_COLUMNS = ("train_top1", "val_top1", "val_top5", "val_map", "val_map50", "val_miou",
                    "val_mask_map", "val_pixel_acc")   # fractions in [0, 1]
LR_COLUMN = "lr"


def _number(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan  # a malformed cell is a gap in the curve, not a failed report


def read_log(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read a per-epoch CSV log into float64 columns; empty or malformed cells become NaN.

    Raises:
        ValueError: if the log has no ``epoch`` column.
    """
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = list(reader.fieldnames or [])
        if "epoch" not in columns:
            raise ValueError(f"{path}: a training log needs an 'epoch' column; found {columns}")
        rows = list(reader)
    return {name: np.array([_number(row.get(name)) for row in rows], dtype=np.float64) for name in columns}


def _plot(ax: Axes, log: dict[str, np.ndarray], columns: tuple[str, ...], ylabel: str) -> None:
    drawn = 0
    for name in columns:
        if name not in log:
            continue
        keep = np.isfinite(log["epoch"]) & np.isfinite(log[name])  # join points across epochs not logged
        if keep.any():
            ax.plot(log["epoch"][keep], log[name][keep], marker="o", markersize=3, label=name)
            drawn += 1
    if drawn:
        ax.legend(loc="best", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="gray")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)


def _plot_lr(ax: Axes, log: dict[str, np.ndarray]) -> None:
    """Learning rate on a log-scaled right axis of the loss panel: step schedules explain loss drops."""
    keep = np.isfinite(log["epoch"]) & np.isfinite(log[LR_COLUMN]) & (log[LR_COLUMN] > 0)
    if not keep.any():
        return
    lr_ax = ax.twinx()
    lr_ax.plot(log["epoch"][keep], log[LR_COLUMN][keep], color="gray", linestyle="--", linewidth=1)
    lr_ax.set_yscale("log")
    lr_ax.set_ylabel("learning rate (dashed)", color="gray")


def save_training_curves(log_csv: str | os.PathLike[str], png: str | os.PathLike[str]) -> Path:
    """Plot a per-epoch CSV log: losses left, accuracies (fractions) right, learning rate dashed.

    Reads the ``epoch`` column and whichever of ``train_loss``, ``val_loss``, ``train_top1``,
    ``val_top1``, ``val_top5``, ``val_map``, ``val_map50``, ``val_miou``, ``val_pixel_acc``, ``val_mask_map``
    and ``lr`` exist; other columns are ignored,
    and a panel with none of its columns says "no data". Returns the path written: a 10 x 4 inch RGB PNG at 100 dpi.
    """
    log = read_log(log_csv)
    figure = new_figure(10.0, 4.0)
    loss_ax, accuracy_ax = figure.subplots(1, 2)
    _plot(loss_ax, log, LOSS_COLUMNS, "loss")
    if LR_COLUMN in log:
        _plot_lr(loss_ax, log)
    _plot(accuracy_ax, log, ACCURACY_COLUMNS, _score_label(log))
    return save_figure(figure, png)


def _score_label(log: dict[str, np.ndarray]) -> str:
    if "val_miou" in log:
        return "mIoU / pixel accuracy"
    return "mAP" if "val_map" in log else "accuracy"
