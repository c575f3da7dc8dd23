"""Mosaic augmentation: four training images tiled around a random centre on one canvas.

From YOLOv4 (Bochkovskiy, Wang and Liao, "YOLOv4: Optimal Speed and Accuracy of Object Detection", 2020):
each batch image shows objects of four contexts at once, and many small objects. As in its common ports,
each image is resized so its longer side equals the canvas side S and placed with one corner on the centre
point: the first image ends at the centre (top-left quadrant), the second starts right of it (top-right),
the third below it (bottom-left), the fourth at it (bottom-right); what falls outside the canvas is cut
off, together with the parts of boxes and masks that were there.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

from ninshiki.data.detection.transforms import GREY, Letterbox

Target = dict[str, Tensor]


def mosaic(parts: Sequence[tuple[Tensor, Mapping[str, Tensor]]], size: int, *,
           center: tuple[float, float]) -> tuple[Tensor, Target]:
    """Tile four (image, target) pairs into one S x S image.

    Args:
        parts: four (image uint8 (3, H, W), target) pairs; targets hold "boxes" (N, 4) float xyxy and
            "labels" (N,) int64, and optionally "masks" (N, H, W) uint8 and other (N,) entries. Entries
            present in all four targets are kept, others are dropped.
        size: the canvas side S.
        center: (x, y) of the point the four images meet at, in canvas pixels.

    Returns:
        The canvas and the boxes (with their entries) that remain visible on it, in canvas pixels.

    Shape:
        - Output: image (3, S, S) uint8; boxes (M, 4) float32 xyxy; masks (M, S, S) uint8 when given.
    """
    if len(parts) != 4:
        raise ValueError(f"a mosaic needs 4 images, got {len(parts)}")
    cx, cy = (round(value) for value in center)
    if not (0 < cx < size and 0 < cy < size):
        raise ValueError(f"mosaic centre {center} is not inside the {size}x{size} canvas")
    keys = set.intersection(*(set(target) for _, target in parts)) - {"boxes"}
    canvas = torch.full((3, size, size), GREY, dtype=torch.uint8)   # (3, S, S)
    pieces: list[Target] = []
    for quadrant, (image, target) in enumerate(parts):
        box = Letterbox.fit(tuple(image.shape[-2:]), size)
        res_h, res_w = box.resized
        x0 = cx if quadrant in (1, 3) else cx - res_w   # where the resized image's top-left lands
        y0 = cy if quadrant in (2, 3) else cy - res_h
        region = (max(x0, 0), max(y0, 0), min(x0 + res_w, size), min(y0 + res_h, size))  # visible x1, y1, x2, y2
        resized = TF.resize(image, [res_h, res_w], antialias=True) if (res_h, res_w) != image.shape[-2:] else image
        canvas[:, region[1]:region[3], region[0]:region[2]] = _visible(resized, region, x0, y0)
        pieces.append(_place_target(target, keys, box, region, x0, y0, size))
    out = {key: torch.cat([piece[key] for piece in pieces]) for key in pieces[0]}
    return canvas, out


def _visible(pixels: Tensor, region: tuple[int, int, int, int], x0: int, y0: int) -> Tensor:
    """The part of an image placed with its top-left at (x0, y0) that falls inside `region`."""
    x1, y1, x2, y2 = region
    return pixels[..., y1 - y0:y2 - y0, x1 - x0:x2 - x0]


def _place_target(target: Mapping[str, Tensor], keys: set[str], box: Letterbox, region: tuple[int, int, int, int],
                  x0: int, y0: int, size: int) -> Target:
    """Scale and shift one image's boxes (and masks) onto the canvas, clip them to its visible region and
    keep those with area left."""
    x1, y1, x2, y2 = region
    boxes = box.to_input(torch.as_tensor(target["boxes"], dtype=torch.float32).reshape(-1, 4))
    boxes = boxes + boxes.new_tensor([x0, y0, x0, y0])                     # (N, 4) xyxy canvas pixels
    boxes = torch.stack([boxes[:, 0].clamp(x1, x2), boxes[:, 1].clamp(y1, y2),
                         boxes[:, 2].clamp(x1, x2), boxes[:, 3].clamp(y1, y2)], dim=1)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])      # (N,)
    out: Target = {"boxes": boxes[keep]}
    for key in keys:
        value = torch.as_tensor(target[key])
        if key == "masks":
            out[key] = _place_masks(value[keep], box, region, x0, y0, size)
        elif value.ndim >= 1 and value.shape[0] == len(keep):
            out[key] = value[keep]
    return out


def _place_masks(masks: Tensor, box: Letterbox, region: tuple[int, int, int, int], x0: int, y0: int,
                 size: int) -> Tensor:
    res_h, res_w = box.resized
    placed = masks.new_zeros(len(masks), size, size)                       # (N, S, S)
    if len(masks) == 0:
        return placed
    resized = TF.resize(masks, [res_h, res_w], interpolation=TF.InterpolationMode.NEAREST_EXACT)  # pixel centres, as the letterbox
    x1, y1, x2, y2 = region
    placed[:, y1:y2, x1:x2] = _visible(resized, region, x0, y0)
    return placed


def random_center(size: int, generator: torch.Generator | None = None) -> tuple[float, float]:
    """A centre drawn uniformly from the middle half of the canvas, so each image keeps at least a quarter
    of the canvas side in both directions."""
    low, span = size / 4, size / 2
    u = torch.rand(2, generator=generator)
    return (low + span * float(u[0]), low + span * float(u[1]))

