"""Pictures of semantic segmentation: colourised class maps, overlays, image | truth | prediction grids and
per-class IoU bars.

Classes are drawn in the colours of their dataset (`SegmentationSet.colours`), by default the PASCAL VOC
colour map (0 black background, 1 dark red, ...), so the pictures match the masks on disk. Pixels of
`ignore_index` (VOC's void borders) are drawn in VOC's void colour (224, 224, 192) in colourised maps and
left untinted in overlays. Legends list only the classes a picture shows.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ninshiki.data.formats.masks import voc_palette
from ninshiki.viz._render import new_figure, save_figure, save_png
from ninshiki.viz.legend import Colour, Entry, add_legend, legend_panel

IGNORE_COLOUR: Colour = (224, 224, 192)   # VOC's void colour
CELL = 2.5                                 # inches per picture in the grid
LabelMap = Tensor | np.ndarray
ImageLike = Tensor | np.ndarray


def _labels(labels: LabelMap, what: str = "labels") -> np.ndarray:
    array = labels.detach().cpu().numpy() if isinstance(labels, Tensor) else np.asarray(labels)
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{what} must be an (H, W) map of integer class indices, got {array.dtype} {array.shape}")
    return array.astype(np.int64)


def _rgb(image: ImageLike) -> np.ndarray:
    """(H, W, 3) uint8 of a (C, H, W) uint8 tensor (C in 1, 3) or an (H, W, 3) / (H, W) uint8 array."""
    if isinstance(image, Tensor):
        if image.ndim != 3 or image.shape[0] not in (1, 3):
            raise ValueError(f"an image tensor must have shape (C, H, W) with C in (1, 3), got {tuple(image.shape)}")
        if image.dtype != torch.uint8:
            raise TypeError(f"images must be uint8 in 0..255, got {image.dtype}; undo normalisation and convert "
                            "with (x * 255).round().clamp(0, 255).to(torch.uint8)")
        image = image.detach().cpu().expand(3, -1, -1).permute(1, 2, 0).numpy()
    array = np.asarray(image)
    if array.dtype != np.uint8 or not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise ValueError(f"an image array must be uint8 (H, W, 3) or (H, W), got {array.dtype} {array.shape}")
    return np.ascontiguousarray(np.repeat(array[..., None], 3, axis=2) if array.ndim == 2 else array)


def palette(colours: Sequence[Colour] | None) -> np.ndarray:
    """The colour table: `colours` as an (n, 3) uint8 array, or the 256 VOC colours when None."""
    if colours is None:
        return np.asarray(voc_palette(), dtype=np.uint8).reshape(256, 3)
    table = np.asarray(colours)
    if table.ndim != 2 or table.shape[1] != 3 or len(table) == 0 or (table < 0).any() or (table > 255).any():
        raise ValueError(f"colours must be a non-empty list of (r, g, b) values in 0..255, got shape {table.shape}")
    return table.astype(np.uint8)


def colourise(labels: LabelMap, colours: Sequence[Colour] | None = None, *, ignore_index: int = 255) -> np.ndarray:
    """Draw a class map in its class colours; `ignore_index` pixels in `IGNORE_COLOUR`.

    Raises:
        ValueError: a value is neither `ignore_index` nor a class with a colour.

    Shape:
        - labels: (H, W) integer. Output: (H, W, 3) uint8 RGB.
    """
    values = _labels(labels)
    table = palette(colours)
    ignored = values == ignore_index
    bad = ((values < 0) | (values >= len(table))) & ~ignored
    if bad.any():
        raise ValueError(f"labels hold values {np.unique(values[bad])[:10].tolist()} without a colour "
                         f"({len(table)} colours, ignore_index {ignore_index})")
    rgb = table[np.where(ignored, 0, values)]   # (H, W, 3)
    rgb[ignored] = IGNORE_COLOUR
    return rgb


def overlay(image: ImageLike, labels: LabelMap, colours: Sequence[Colour] | None = None, *, alpha: float = 0.5,
            ignore_index: int = 255, background: int | None = 0) -> np.ndarray:
    """Blend the class colours over an image: ``(1 - alpha) * image + alpha * colour``, rounded.

    Pixels of `background` (None: none) and of `ignore_index` keep the image's colour, so the objects stand out.

    Shape:
        - image: (C, H, W) uint8 tensor (C in 1, 3) or (H, W, 3) / (H, W) uint8 array; labels: (H, W).
        - Output: (H, W, 3) uint8 RGB.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    rgb, values = _rgb(image), _labels(labels)
    if values.shape != rgb.shape[:2]:
        raise ValueError(f"labels of shape {values.shape} for an image of {rgb.shape[:2]} (H, W)")
    colour = colourise(values, colours, ignore_index=ignore_index).astype(np.float64)   # (H, W, 3)
    tinted = values != ignore_index                                                    # (H, W)
    if background is not None:
        tinted &= values != background
    blended = np.rint((1.0 - alpha) * rgb + alpha * colour).astype(np.uint8)          # (H, W, 3)
    return np.where(tinted[..., None], blended, rgb)


def legend_entries(maps: Iterable[LabelMap], classes: Sequence[str], colours: Sequence[Colour] | None = None, *,
                   ignore_index: int = 255, skip: int | None = None, show_ignore: bool = True) -> list[Entry]:
    """(name, colour) of every class occurring in `maps`, in class order, then ("ignore", `IGNORE_COLOUR`) if
    any pixel is `ignore_index` and `show_ignore`; class `skip` (e.g. an untinted background) is left out."""
    table = palette(colours)
    seen: set[int] = set()
    for labels in maps:
        seen.update(np.unique(_labels(labels)).tolist())
    has_ignore = show_ignore and ignore_index in seen
    seen.discard(ignore_index)
    if skip is not None:
        seen.discard(skip)
    unnamed = sorted(k for k in seen if not 0 <= k < min(len(classes), len(table)))
    if unnamed:
        raise ValueError(f"labels hold values {unnamed[:10]} outside the {len(classes)} classes "
                         f"(and ignore_index {ignore_index})")
    entries: list[Entry] = [(classes[k], tuple(int(c) for c in table[k])) for k in sorted(seen)]
    return entries + [("ignore", IGNORE_COLOUR)] if has_ignore else entries


def save_segmentation_grid(path: str | os.PathLike[str], images: Sequence[ImageLike],
                           ground_truths: Sequence[LabelMap] | None, predictions: Sequence[LabelMap],
                           classes: Sequence[str], colours: Sequence[Colour] | None = None, *, max_images: int = 8,
                           ignore_index: int = 255, title: str = "") -> Path:
    """Rows of image | ground truth | prediction (image | prediction without ground truth), with column titles
    and a legend of the classes shown.

    Args:
        path: the PNG to write (atomically).
        images: the images as shown to people (not normalised).
        ground_truths: class maps of the images, or None.
        predictions: predicted class maps, e.g. `predict_classes(raw, sizes)`.
        classes: class names; the maps' values index them.
        colours: RGB per class; None: the VOC colour map.
        max_images: draw only the first this many.
        title: figure title.

    Returns:
        The path written: an RGB image (2.5 * columns + 2) inches wide and 2.5 * rows + 0.5 inches high at
        100 dpi (the 2 inches hold the legend).

    Shape:
        - images: (C, H, W) uint8 tensors or (H, W, 3) uint8 arrays; maps: (H, W) of the same H, W per row.
    """
    if not len(images) or len(predictions) != len(images) or (ground_truths is not None and
                                                               len(ground_truths) != len(images)):
        raise ValueError(f"need at least one image and one prediction (and ground truth) per image; got "
                         f"{len(images)} images, {len(predictions)} predictions and "
                         f"{'no' if ground_truths is None else len(ground_truths)} ground truths")
    n = min(len(images), max_images)
    columns = {"image": [_rgb(images[i]) for i in range(n)]}
    if ground_truths is not None:
        columns["ground truth"] = [_labels(ground_truths[i], f"ground_truths[{i}]") for i in range(n)]
    columns["prediction"] = [_labels(predictions[i], f"predictions[{i}]") for i in range(n)]
    for name, maps in list(columns.items())[1:]:
        for i, (labels, rgb) in enumerate(zip(maps, columns["image"])):
            if labels.shape != rgb.shape[:2]:
                raise ValueError(f"{name} {i} has shape {labels.shape} but its image is {rgb.shape[:2]} (H, W)")
    maps = [m for name, ms in columns.items() if name != "image" for m in ms]
    entries = legend_entries(maps, classes, colours, ignore_index=ignore_index)
    figure = new_figure(CELL * len(columns) + 2.0, CELL * n + 0.5)
    axes = figure.subplots(n, len(columns), squeeze=False)
    for col, (name, pictures) in enumerate(columns.items()):
        axes[0, col].set_title(name, fontsize=10)
        for row, picture in enumerate(pictures):
            shown = picture if name == "image" else colourise(picture, colours, ignore_index=ignore_index)
            axes[row, col].imshow(shown, interpolation="nearest")
            axes[row, col].set_axis_off()
    add_legend(figure, entries)
    if title:
        figure.suptitle(title)
    return save_figure(figure, path)


def save_overlay(path: str | os.PathLike[str], image: ImageLike, labels: LabelMap, classes: Sequence[str],
                 colours: Sequence[Colour] | None = None, *, alpha: float = 0.5, ignore_index: int = 255,
                 background: int | None = 0) -> Path:
    """Write the image at its own resolution with the class-colour `overlay`, and a legend of the tinted classes
    on a white panel to its right (no panel when nothing is tinted).

    Returns:
        The path written: an RGB PNG as high as the image and wider by the legend panel.

    Shape:
        - image: (C, H, W) uint8 tensor or (H, W, 3) uint8 array; labels: (H, W).
    """
    blended = overlay(image, labels, colours, alpha=alpha, ignore_index=ignore_index, background=background)
    # Ignored pixels are not tinted, so there is no colour of theirs to explain.
    entries = legend_entries([labels], classes, colours, ignore_index=ignore_index, skip=background,
                             show_ignore=False)
    if not entries:
        return save_png(blended, path)
    height = blended.shape[0]
    panel = legend_panel(entries, height, font_size=max(10, round(height * 0.03)))   # (H, W', 3)
    return save_png(np.concatenate([blended, panel], axis=1), path)


def save_class_iou_bars(path: str | os.PathLike[str], ious: Mapping[str, float], *, max_classes: int = 50,
                        title: str = "") -> Path:
    """Draw per-class IoU as horizontal bars, worst at the top, with the mean (mIoU) as a dashed line.

    Classes with NaN IoU (neither in the ground truth nor predicted) are listed last as "n/a".

    Args:
        path: the PNG to write (atomically).
        ious: class name -> IoU, or a whole `SegmentationMetric.compute()` dict (its ``iou/<name>`` entries).
        max_classes: with more classes, only the `max_classes` of lowest IoU are drawn (the mean is still over
            all).
        title: figure title.

    Returns:
        The path written: an RGB image 8 inches wide, 1.5 + 0.5 * ceil(n / 2) inches high at 100 dpi for the
        n classes drawn.
    """
    if any(key.startswith("iou/") for key in ious):
        ious = {key[4:]: value for key, value in ious.items() if key.startswith("iou/")}
    if not ious:
        raise ValueError("ious is empty")
    defined = sorted(((float(v), k) for k, v in ious.items() if not math.isnan(float(v))))
    undefined = [k for k, v in ious.items() if math.isnan(float(v))]
    rows = (defined + [(math.nan, k) for k in undefined])[:max_classes]
    y = np.arange(len(rows))
    figure = new_figure(8.0, 1.5 + 0.5 * math.ceil(len(rows) / 2))
    ax = figure.add_subplot()
    ax.barh(y, [0.0 if math.isnan(v) else v for v, _ in rows], height=0.6, color="tab:blue")
    for i, (value, _) in enumerate(rows):
        if math.isnan(value):
            ax.text(0.01, i, "n/a", va="center", fontsize=7)
        elif value > 0.9:   # no room right of the bar: write inside its end
            ax.text(value - 0.01, i, f"{value:.3f}", va="center", ha="right", color="white", fontsize=7)
        else:
            ax.text(value + 0.01, i, f"{value:.3f}", va="center", fontsize=7)
    if defined:
        mean = sum(v for v, _ in defined) / len(defined)
        ax.axvline(mean, color="tab:red", linestyle="--", linewidth=1, label=f"mean IoU {mean:.3f}")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_yticks(y, labels=[name for _, name in rows], fontsize=8)
    ax.invert_yaxis()   # worst class at the top
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("IoU")
    ax.set_title(title)
    return save_figure(figure, path)
