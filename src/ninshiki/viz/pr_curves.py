"""Precision-recall curves of a detector: VOC's per class at IoU 0.5, and COCO's 101-point curves.

Reads the dict of `DetectionMetric.curves()`. Left panel: each class's raw precision-recall curve at IoU
0.5 (detections by decreasing score, difficult objects ignored) with its VOC2012 AP; with many classes the
best and worst few are named and the rest drawn thin. Right panel: COCO's interpolated precision at the
101 recall thresholds, averaged over the classes with ground truth, at IoU 0.50, 0.75 and over
0.50:0.95; the areas under these curves are mAP@.5, mAP@.75 and mAP.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes

from ninshiki.viz._render import new_figure, save_figure


def _named(scored: list[tuple[str, float]], max_named: int) -> set[str]:
    """The classes to name in a legend: all, or the best and worst halves of `max_named` by score."""
    if len(scored) <= max_named:
        return {name for name, _ in scored}
    ranked = sorted(scored, key=lambda item: (-item[1], item[0]))
    half = max_named // 2
    return {name for name, _ in ranked[:max_named - half] + ranked[len(ranked) - half:]}


def _no_data(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="gray")


def _setup(ax: Axes, title: str) -> None:
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)


def plot_voc_pr(ax: Axes, curves: Mapping[str, Any], *, max_named: int = 10) -> None:
    """Per-class precision-recall at IoU 0.5 on `ax`; `curves` is `DetectionMetric.curves()`."""
    pr = curves["pr"]
    scored = [(name, pr[name].ap12) for name in curves["classes"] if pr[name].num_positives > 0]
    named = _named(scored, max_named)
    for name, ap in scored:
        curve = pr[name]
        recall = np.concatenate([[0.0], curve.recall])            # start at the top-left, before any detection
        precision = np.concatenate([[curve.precision[0] if len(curve.precision) else 0.0], curve.precision])
        if name in named:
            ax.plot(recall, precision, linewidth=1.5, label=f"{name} (AP {ap:.3f})")
        else:
            ax.plot(recall, precision, linewidth=0.6, color="0.75")
    if scored:
        ax.legend(loc="lower left", fontsize=7)
    else:
        _no_data(ax, "no ground truth")
    _setup(ax, "VOC precision-recall, IoU 0.5")


def plot_coco_pr(ax: Axes, curves: Mapping[str, Any]) -> None:
    """COCO's 101-point interpolated precision, mean over classes, at IoU .50, .75 and .50:.95, on `ax`."""
    stacked = np.stack([curves["coco_precision"][n] for n in curves["classes"]])   # (K, 10, 101)
    present = ~np.isnan(stacked[:, 0, 0])
    recall = curves["recall_thresholds"]
    if not present.any():
        _no_data(ax, "no ground truth")
    else:
        per_iou = stacked[present].mean(axis=0)       # (10, 101)
        iou = curves["iou_thresholds"]
        for row, label in ((np.isclose(iou, 0.5), "IoU 0.50"), (np.isclose(iou, 0.75), "IoU 0.75")):
            values = per_iou[row][0]
            ax.plot(recall, values, linewidth=1.5, label=f"{label} (mAP {values.mean():.3f})")
        mean = per_iou.mean(axis=0)
        ax.plot(recall, mean, linewidth=2.0, color="black", label=f"IoU 0.50:0.95 (mAP {mean.mean():.3f})")
        ax.legend(loc="lower left", fontsize=8)
    _setup(ax, f"COCO interpolated precision, {int(present.sum())} classes, 100 detections")


def save_pr_curves(curves: Mapping[str, Any], path: str | os.PathLike[str], *, max_named: int = 10) -> Path:
    """Draw both panels and write a 12 x 5 inch RGB PNG at 100 dpi, atomically. Returns the path.

    Args:
        curves: `DetectionMetric.curves()`.
        path: the PNG to write.
        max_named: at most this many classes are named in the per-class legend.
    """
    figure = new_figure(12.0, 5.0)
    voc_ax, coco_ax = figure.subplots(1, 2)
    plot_voc_pr(voc_ax, curves, max_named=max(1, max_named))
    plot_coco_pr(coco_ax, curves)
    if "num_images" in curves:
        figure.suptitle(f"{curves['num_images']} images", fontsize=10)
    return save_figure(figure, path)
