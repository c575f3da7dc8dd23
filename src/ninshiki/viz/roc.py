"""ROC curves of verification models: TAR against FAR, one curve per model, for `ninshiki verify val`.

On the default logarithmic FAR axis (from 1e-4, where face verification is judged) each curve is drawn as a
staircase: at every FAR the height is the best TAR reachable without exceeding it, the rule of
`tar_at_far`, so the markers at the reported FARs sit on the curves. Points at FAR below the axis' left
edge (including FAR = 0) are drawn at the edge. On a linear axis the points are joined by straight lines,
the curve whose area is the AUC.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from numpy.typing import ArrayLike
from sklearn.metrics import auc

from ninshiki.metrics.verification import eer_from_roc, tar_at_far_from_roc
from ninshiki.viz._render import new_figure, save_figure


def _curve(name: str, far: ArrayLike, tar: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validated (T,) float64 FAR and TAR of one curve."""
    far, tar = np.asarray(far, np.float64).reshape(-1), np.asarray(tar, np.float64).reshape(-1)
    if len(far) == 0 or len(far) != len(tar):
        raise ValueError(f"curve {name!r}: needs equal, non-zero numbers of FAR and TAR values, got {len(far)} "
                         f"and {len(tar)}")
    if not (np.isfinite(far).all() and np.isfinite(tar).all()) or far.min() < 0 or far.max() > 1 \
            or tar.min() < 0 or tar.max() > 1:
        raise ValueError(f"curve {name!r}: rates must lie in [0, 1]")
    if (np.diff(far) < 0).any() or (np.diff(tar) < 0).any():
        raise ValueError(f"curve {name!r}: FAR and TAR must not decrease along the curve (as roc() returns them)")
    return far, tar


def plot_roc(ax: Axes, curves: Mapping[str, tuple[ArrayLike, ArrayLike]], *, log_far: bool = True,
             fars: Sequence[float] = (1e-2, 1e-3), min_far: float = 1e-4) -> None:
    """Draw the curves on `ax`, with chance, dotted lines at `fars` and each curve's TAR marked there."""
    for far_mark in fars if log_far else ():   # on a linear axis they would crowd the left edge
        ax.axvline(far_mark, color="0.6", linestyle=":", linewidth=1.0)
    chance = np.logspace(np.log10(min_far), 0.0, 200) if log_far else np.array([0.0, 1.0])   # (n,)
    ax.plot(chance, chance, color="0.7", linestyle="--", linewidth=1.0, label="chance")
    for name, (far, tar) in curves.items():
        far, tar = _curve(name, far, tar)
        label = f"{name} (AUC {auc(far, tar):.3f}, EER {eer_from_roc(far, tar):.2%})"
        if log_far:
            line, = ax.plot(np.maximum(far, min_far), tar, drawstyle="steps-post", linewidth=1.5, label=label)
        else:
            line, = ax.plot(far, tar, linewidth=1.5, label=label)
        marks = np.array([tar_at_far_from_roc(far, tar, f) for f in fars])   # (len(fars),)
        ax.plot(list(fars), marks, linestyle="none", marker="o", markersize=5, color=line.get_color())
    if log_far:
        ax.set_xscale("log")
        ax.set_xlim(min_far, 1.0)
    else:
        ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("false accept rate (FAR)")
    ax.set_ylabel("true accept rate (TAR)")
    ax.grid(alpha=0.3, which="both" if log_far else "major")
    if not curves:
        ax.text(0.5, 0.5, "no curves", transform=ax.transAxes, ha="center", va="center", color="gray")
    ax.legend(loc="lower right", fontsize=8)


def save_roc(curves: Mapping[str, tuple[ArrayLike, ArrayLike]], path: str | os.PathLike[str], *,
             log_far: bool = True, fars: Sequence[float] = (1e-2, 1e-3), min_far: float = 1e-4,
             title: str | None = None) -> Path:
    """Write ROC curves as a 6 x 5 inch RGB PNG at 100 dpi, atomically. Returns the path.

    Args:
        curves: name -> (far, tar), e.g. the first two arrays of `VerificationMetric.roc()`. Give the full
            curve (``drop_intermediate=False``): the staircase and the markers read every point.
        path: the PNG to write.
        log_far: a logarithmic FAR axis from `min_far` to 1; False draws a linear one from 0.
        fars: the FARs marked (those `VerificationMetric` reports).
        min_far: the left edge of the logarithmic axis.
        title: above the plot.

    Shape:
        - far, tar: (T,) each, non-decreasing, in [0, 1].
    """
    if log_far and not 0.0 < min_far < 1.0:
        raise ValueError(f"min_far must lie in (0, 1), got {min_far}")
    figure = new_figure(6.0, 5.0)
    ax = figure.subplots()
    plot_roc(ax, curves, log_far=log_far, fars=fars, min_far=min_far)
    ax.set_title(title or "ROC", fontsize=10)
    return save_figure(figure, path)
