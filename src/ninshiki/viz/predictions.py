"""A grid of images titled with their predicted class and probability, coloured by correctness."""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from ninshiki.viz._render import new_figure, save_figure

CORRECT, WRONG, UNKNOWN = "tab:green", "tab:red", "black"


def _check(images: Tensor, predicted: Sequence[tuple[str, float]], truth: Sequence[str] | None) -> None:
    if images.ndim != 4 or images.shape[1] not in (1, 3) or images.shape[0] == 0:
        raise ValueError(f"images must have shape (N, C, H, W) with N >= 1 and C in (1, 3), got {tuple(images.shape)}")
    if images.dtype != torch.uint8:
        raise TypeError(f"images must be uint8 in 0..255, got {images.dtype}; undo normalisation and convert "
                        "with (x * 255).round().clamp(0, 255).to(torch.uint8)")
    if len(predicted) != len(images):
        raise ValueError(f"got {len(predicted)} predictions for {len(images)} images")
    if truth is not None and len(truth) != len(images):
        raise ValueError(f"got {len(truth)} true labels for {len(images)} images")


def caption(predicted: tuple[str, float], truth: str | None) -> tuple[str, str]:
    """Title text and colour of one image: "label 0.97", green if right, red (naming the truth) if wrong."""
    label, probability = predicted
    text = f"{label} {probability:.2f}"
    if truth is None:
        return text, UNKNOWN
    if label == truth:
        return text, CORRECT
    return f"{text}\n(true: {truth})", WRONG


def save_prediction_grid(images: Tensor, predicted: Sequence[tuple[str, float]], path: str | os.PathLike[str], *,
                         truth: Sequence[str] | None = None, max_images: int = 32) -> Path:
    """Draw up to `max_images` images on a near-square grid, each titled with its prediction.

    Args:
        images: the images as shown to people (not normalised); one channel is drawn in gray.
        predicted: (class name, probability) per image, e.g. the first entry of each
            `topk_predictions` row.
        path: the PNG to write (atomically).
        truth: true class name per image; when given, titles are green where right and red where wrong.
        max_images: draw only the first this many.

    Returns:
        The path written: an RGB image of 2 inches per column by 2.5 inches per row at 100 dpi, with
        ceil(sqrt(n)) columns for the n images drawn.

    Shape:
        - images: (N, C, H, W) uint8, C in (1, 3).
    """
    _check(images, predicted, truth)
    count = min(len(images), max_images)
    cols = math.ceil(math.sqrt(count))
    rows = math.ceil(count / cols)
    figure = new_figure(2.0 * cols, 2.5 * rows)
    pixels = images[:count].detach().cpu().permute(0, 2, 3, 1).numpy()  # (n, H, W, C)
    for i in range(count):
        ax = figure.add_subplot(rows, cols, i + 1)
        if pixels.shape[-1] == 1:
            ax.imshow(pixels[i, ..., 0], cmap="gray", vmin=0, vmax=255)
        else:
            ax.imshow(pixels[i])
        text, color = caption(predicted[i], None if truth is None else truth[i])
        ax.set_title(text, color=color, fontsize=9)
        ax.set_axis_off()
    return save_figure(figure, path)
