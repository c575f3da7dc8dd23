"""Miss rate against false positives per image, on log-log axes, as pedestrian-detection papers draw it
(Dollár et al., PAMI 2012): one curve per class, named with its log-average miss rate.

Reads the dict of `DetectionMetric.curves()`. The band 1e-2 <= FPPI <= 1e0 over which the log-average
miss rate is taken is shaded; lower curves are better.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes

from ninshiki.viz._render import new_figure, save_figure
from ninshiki.viz.pr_curves import _named, _no_data

FPPI_RANGE = (1e-3, 1e1)    # the x range of Dollár's plots
MISS_RANGE = (0.05, 1.0)    # and their y range


def plot_miss_rate(ax: Axes, curves: Mapping[str, Any], *, max_named: int = 10) -> None:
    """Miss rate against FPPI of every class with ground truth, on `ax` (log-log)."""
    miss = curves["miss_rate"]
    scored = [(name, miss[name].log_average) for name in curves["classes"] if miss[name].num_positives > 0]
    named = _named([(name, -lamr) for name, lamr in scored], max_named)    # best = lowest miss rate
    for name, lamr in scored:
        curve = miss[name]
        before = curve.fppi < FPPI_RANGE[0]   # e.g. FPPI 0: the true positives ranked above the first false one
        start = curve.miss_rate[before][-1] if before.any() else 1.0
        fppi = np.concatenate([[FPPI_RANGE[0]], curve.fppi[~before]])      # the curve ends at the last detection
        rate = np.concatenate([[start], curve.miss_rate[~before]])
        rate = np.maximum(rate, MISS_RANGE[0] * 0.5)  # a miss rate of 0 would vanish from a log axis
        style = ({"linewidth": 1.5, "label": f"{name} ({lamr:.1%})"} if name in named
                 else {"linewidth": 0.6, "color": "0.75"})
        ax.plot(fppi, rate, drawstyle="steps-post", **style)
    ax.axvspan(1e-2, 1e0, color="0.93", zorder=0)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(*FPPI_RANGE)
    ax.set_ylim(*MISS_RANGE)
    ax.set_xlabel("false positives per image")
    ax.set_ylabel("miss rate")
    ax.grid(alpha=0.3, which="both")
    if scored:
        ax.legend(loc="lower left", fontsize=7, title="log-average miss rate", title_fontsize=7)
    else:
        _no_data(ax, "no ground truth")


def save_miss_rate_curves(curves: Mapping[str, Any], path: str | os.PathLike[str], *, max_named: int = 10) -> Path:
    """Draw the miss-rate curves and write a 7 x 5.5 inch RGB PNG at 100 dpi, atomically. Returns the path.

    Args:
        curves: `DetectionMetric.curves()`.
        path: the PNG to write.
        max_named: at most this many classes are named in the legend (the lowest and highest miss rates).
    """
    figure = new_figure(7.0, 5.5)
    ax = figure.subplots()
    plot_miss_rate(ax, curves, max_named=max(1, max_named))
    if "num_images" in curves:
        ax.set_title(f"{curves['num_images']} images", fontsize=10)
    return save_figure(figure, path)
