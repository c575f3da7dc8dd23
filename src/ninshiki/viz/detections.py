"""Labelled boxes drawn on images: detections ("dog 0.87"), ground truth ("dog"), and grids of them.

Boxes are drawn by `torchvision.utils.draw_bounding_boxes`; labels by PIL with its built-in scalable font
(`ImageFont.load_default(size=...)`, Pillow >= 10.1), since torchvision only scales TrueType fonts given
by path and none can be assumed offline. Each label sits on a patch of its box's colour, above the box when
there is room and inside it otherwise. Every class has its own colour: hues spaced by the golden ratio,
so neighbouring class indices look different however many classes there are.
"""
from __future__ import annotations

import colorsys
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks, make_grid

from ninshiki.data.detection.transforms import letterbox
from ninshiki.structures import Detections
from ninshiki.viz._render import save_png

Color = tuple[int, int, int]
_GOLDEN = 0.618033988749895


def class_color(label: int) -> Color:
    """The RGB colour of class `label`: hue stepped by the golden ratio, fixed saturation and value."""
    r, g, b = colorsys.hsv_to_rgb((0.05 + label * _GOLDEN) % 1.0, 0.85, 0.95)
    return (round(r * 255), round(g * 255), round(b * 255))


def default_line_width(height: int, width: int) -> int:
    """Box outline width for an image: ~0.3% of its mean side, at least 1 pixel."""
    return max(1, round((height + width) / 2 * 0.003))


def default_font_size(height: int, width: int) -> int:
    """Label height for an image: ~3% of its mean side, at least 10 pixels."""
    return max(10, round((height + width) / 2 * 0.03))


def _rgb(image: Tensor) -> Tensor:
    if not isinstance(image, Tensor) or image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"expected an image of shape (C, H, W) with C in (1, 3), got {getattr(image, 'shape', image)}")
    if image.dtype != torch.uint8:
        raise TypeError(f"images must be uint8 in 0..255, got {image.dtype}; convert with "
                        "(x * 255).round().clamp(0, 255).to(torch.uint8)")
    image = image.detach().cpu()
    return image.expand(3, -1, -1).clone() if image.shape[0] == 1 else image.clone()


def _pixel_boxes(boxes: Tensor, height: int, width: int) -> Tensor:
    """xyxy boxes (x2, y2 exclusive) as the inclusive pixel corners PIL draws, inside the image.

    Shape:
        - boxes: (N, 4) float. Output: (N, 4) int64.
    """
    boxes = boxes.detach().cpu().float()
    x1 = boxes[:, 0].floor().clamp(0, width - 1)
    y1 = boxes[:, 1].floor().clamp(0, height - 1)
    x2 = torch.maximum(boxes[:, 2].ceil() - 1, x1).clamp(0, width - 1)
    y2 = torch.maximum(boxes[:, 3].ceil() - 1, y1).clamp(0, height - 1)
    return torch.stack([x1, y1, x2, y2], dim=1).long()  # (N, 4)


def _draw_labels(image: Tensor, boxes: Tensor, texts: Sequence[str], colors: Sequence[Color], font_size: int) -> Tensor:
    """Write each text on a patch of its colour at its box's top-left corner (above the box when it fits)."""
    canvas = Image.fromarray(image.permute(1, 2, 0).numpy())
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=font_size)
    margin = max(1, font_size // 6)
    for (x1, y1, _, _), text, color in zip(boxes.tolist(), texts, colors):
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        text_w, text_h = right - left + 2 * margin, bottom - top + 2 * margin
        y = y1 - text_h if y1 - text_h >= 0 else y1  # above the box, or inside it at the top of the image
        x = max(0, min(x1, canvas.width - text_w))
        draw.rectangle((x, y, x + text_w - 1, y + text_h - 1), fill=color)
        ink = (0, 0, 0) if 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2] > 150 else (255, 255, 255)
        draw.text((x + margin - left, y + margin - top), text, fill=ink, font=font)
    return torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1).contiguous()


def _draw(image: Tensor, boxes: Tensor, labels: Tensor, texts: list[str], *, colors: Sequence[Color] | None,
          line_width: int | None, font_size: int | None) -> Tensor:
    rgb = _rgb(image)
    if len(boxes) == 0:
        return rgb
    height, width = rgb.shape[-2:]
    classes = labels.detach().cpu().tolist()
    palette = [colors[k % len(colors)] if colors else class_color(k) for k in classes]
    pixels = _pixel_boxes(boxes, height, width)
    order = list(range(len(pixels)))[::-1]  # the first (best-scoring) box is drawn last, on top
    drawn = draw_bounding_boxes(rgb, pixels[order], colors=[palette[i] for i in order],
                                width=line_width or default_line_width(height, width))
    return _draw_labels(drawn, pixels[order], [texts[i] for i in order], [palette[i] for i in order],
                        font_size or default_font_size(height, width))


def _name(classes: Sequence[str], label: int) -> str:
    return classes[label] if 0 <= label < len(classes) else f"class {label}"


def draw_detections(image: Tensor, detections: Detections, classes: Sequence[str], *, score_threshold: float = 0.25,
                    colors: Sequence[Color] | None = None, line_width: int | None = None,
                    font_size: int | None = None) -> Tensor:
    """Draw the detections scoring at least `score_threshold` as boxes labelled "name 0.87", over their masks
    (half-transparent, in the class colour) when the detections carry masks.

    Args:
        image: the image the boxes are in pixels of (xyxy).
        detections: boxes, scores and labels (indices into `classes`).
        classes: class names.
        score_threshold: detections below it are not drawn.
        colors: one RGB colour per class; default `class_color`.
        line_width: box outline in pixels; default `default_line_width`.
        font_size: label height in pixels; default `default_font_size`.

    Returns:
        A new image; a copy of the input when nothing is drawn.

    Shape:
        - image: (C, H, W) uint8, C in (1, 3). Output: (3, H, W) uint8.
    """
    keep = detections.scores.detach().cpu() >= score_threshold
    picked = detections.to("cpu")[keep]
    texts = [f"{_name(classes, k)} {s:.2f}" for k, s in zip(picked.labels.tolist(), picked.scores.tolist())]
    if picked.masks is not None and len(picked):
        image = _draw_masks(_rgb(image), picked.masks, picked.labels, colors)
    return _draw(image, picked.boxes, picked.labels, texts, colors=colors, line_width=line_width, font_size=font_size)


def _draw_masks(image: Tensor, masks: Tensor, labels: Tensor, colors: Sequence[Color] | None) -> Tensor:
    """Masks (N, H, W) bool over a (3, H, W) uint8 image, each in its class colour at half opacity."""
    if tuple(masks.shape[1:]) != tuple(image.shape[1:]):
        raise ValueError(f"masks of size {tuple(masks.shape[1:])} for an image of size {tuple(image.shape[1:])}")
    palette = [colors[k % len(colors)] if colors else class_color(k) for k in labels.tolist()]
    return draw_segmentation_masks(image, masks.bool(), alpha=0.5, colors=palette)


def draw_ground_truth(image: Tensor, boxes: Tensor, labels: Tensor, classes: Sequence[str], *,
                      colors: Sequence[Color] | None = None, line_width: int | None = None,
                      font_size: int | None = None) -> Tensor:
    """Draw annotated boxes labelled with their class names (no score).

    Shape:
        - image: (C, H, W) uint8; boxes: (N, 4) float xyxy; labels: (N,) int64. Output: (3, H, W) uint8.
    """
    if boxes.shape != (len(labels), 4):
        raise ValueError(f"boxes of shape {tuple(boxes.shape)} for {len(labels)} labels; expected ({len(labels)}, 4)")
    texts = [_name(classes, k) for k in labels.tolist()]
    return _draw(image, boxes, labels, texts, colors=colors, line_width=line_width, font_size=font_size)


def detection_grid(images: Sequence[Tensor], detections: Sequence[Detections], classes: Sequence[str], *,
                   ncols: int = 4, cell: int = 320, score_threshold: float = 0.25, padding: int = 4) -> Tensor:
    """Images with their drawn detections, each letterboxed into a `cell` x `cell` square, on a white grid.

    Images are scaled before drawing, so lines and labels have the same size in every cell.

    Shape:
        - images: (C, H, W) uint8 each, any sizes. Output: (3, rows * (cell + padding) + padding,
          ncols' * (cell + padding) + padding) uint8 with ncols' = min(ncols, len(images)).
    """
    if len(images) != len(detections) or not images:
        raise ValueError(f"need one Detections per image and at least one image; got {len(images)} images and "
                         f"{len(detections)} detections")
    if ncols < 1:
        raise ValueError(f"ncols must be at least 1, got {ncols}")
    cells = []
    for image, found in zip(images, detections):
        square, box = letterbox(_rgb(image), cell)
        moved = Detections(box.to_input(found.boxes.detach().cpu().float()), found.scores.cpu(), found.labels.cpu())
        cells.append(draw_detections(square, moved, classes, score_threshold=score_threshold))
    return make_grid(torch.stack(cells), nrow=min(ncols, len(cells)), padding=padding, pad_value=255)


def save_detection_grid(images: Sequence[Tensor], detections: Sequence[Detections], classes: Sequence[str],
                        path: str | os.PathLike[str], *, ncols: int | None = None, cell: int = 320,
                        score_threshold: float = 0.25) -> Path:
    """Write `detection_grid` as a PNG (atomically); `ncols` defaults to a near-square grid. Returns the path."""
    ncols = ncols or math.ceil(math.sqrt(len(images)))
    grid = detection_grid(images, detections, classes, ncols=ncols, cell=cell, score_threshold=score_threshold)
    return save_png(grid.permute(1, 2, 0).numpy(), path)
