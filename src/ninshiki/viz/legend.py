"""Legends of class colours: as a matplotlib figure legend, or drawn in pixels beside a full-size image.

An entry is a (name, RGB colour) pair; which classes get one is the caller's choice (the segmentation
pictures list only the classes they show, `viz/segmentation.legend_entries`).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from PIL import Image, ImageDraw, ImageFont

Colour = tuple[int, int, int]
Entry = tuple[str, Colour]
LEGEND_FONT_POINTS = 8


def add_legend(figure: Figure, entries: Sequence[Entry], *, title: str = "classes") -> None:
    """A legend of colour swatches outside the axes, on the right, in as many columns as its height needs."""
    if not entries:
        return
    handles = [Patch(facecolor=np.asarray(c) / 255.0, edgecolor="black", linewidth=0.5, label=name)
               for name, c in entries]
    height_points = figure.get_figheight() * 72.0
    per_column = max(1, int((height_points - 3 * LEGEND_FONT_POINTS) // (1.6 * LEGEND_FONT_POINTS)))
    figure.legend(handles=handles, loc="outside right upper", fontsize=LEGEND_FONT_POINTS, title=title,
                  title_fontsize=LEGEND_FONT_POINTS, ncols=math.ceil(len(handles) / per_column), frameon=False)


def legend_panel(entries: Sequence[Entry], height: int, *, font_size: int) -> np.ndarray:
    """A white panel `height` pixels high with a swatch and the name of every entry, top to bottom, in as many
    columns as needed, to be placed beside an image drawn at its own resolution.

    Shape:
        - Output: (height, W, 3) uint8, W growing with the longest name and the number of columns.
    """
    font = ImageFont.load_default(size=font_size)
    margin, row = max(2, font_size // 2), round(font_size * 1.5)
    swatch = font_size
    per_column = max(1, (height - margin) // row)
    columns = [entries[i:i + per_column] for i in range(0, len(entries), per_column)]
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    widths = [max(probe.textlength(name, font=font) for name, _ in column) for column in columns]
    column_widths = [margin + swatch + margin + math.ceil(w) + margin for w in widths]
    panel = Image.new("RGB", (sum(column_widths) + margin, height), "white")
    draw = ImageDraw.Draw(panel)
    x = margin
    for column, width in zip(columns, column_widths):
        for i, (name, colour) in enumerate(column):
            y = margin + i * row
            draw.rectangle((x, y, x + swatch - 1, y + swatch - 1), fill=tuple(colour), outline=(0, 0, 0))
            draw.text((x + swatch + margin, y + swatch / 2), name, fill=(0, 0, 0), font=font, anchor="lm")
        x += width
    return np.asarray(panel).copy()
