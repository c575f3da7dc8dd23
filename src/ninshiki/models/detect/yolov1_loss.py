"""YOLO v1's target assignment, loss and decoding: Redmon, Divvala, Girshick and Farhadi, "You Only Look Once:
Unified, Real-Time Object Detection" (CVPR 2016), section 2.2.

The network predicts an S x S grid; each cell holds B boxes and C class probabilities, laid out on the last
axis as `[x, y, sqrt(w), sqrt(h), confidence] * B + [Pr(class_1 | object) ... Pr(class_C | object)]`:
`x, y` are the box centre's offset inside its cell (0..1), `w, h` its size relative to the image. A
ground-truth box belongs to the cell that contains its centre; of the cell's B predictors, the one whose
current box has the highest IoU with it is "responsible" for it. The loss is the paper's equation (3), a
sum-squared error over the batch divided by the batch size:

    lambda_coord * sum_resp [(x - x^)^2 + (y - y^)^2 + (sqrt w - sqrt w^)^2 + (sqrt h - sqrt h^)^2]
    + sum_resp (C - C^)^2 + lambda_noobj * sum_not_resp C^2 + sum_cells_with_object sum_c (p(c) - p^(c))^2

Choices where the paper is silent, all as in the authors' Darknet (`detection_layer.c`):
- The confidence target C^ of a responsible predictor is the IoU of its (detached) box with the truth
  (`confidence_target="iou"`, Darknet's `rescore=1`), or 1 (`"one"`).
- When none of the cell's predictors overlaps the truth (as at initialisation), the responsible one is the
  closest in (cx, cy, w, h).
- Every predictor that is not responsible, also in a cell with an object, is pushed to confidence 0 with
  weight lambda_noobj.
- A cell holds one object: of several centred in it, the largest (area) is kept, the first on ties.

Deviation, for stability: the last layer is linear as in the paper and the loss sees its raw outputs, but
boxes are decoded (for the IoU above and for the detections) with x, y, sqrt(w), sqrt(h) clamped to [0, 1],
and scores from confidence and class probabilities clamped to [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Target = dict[str, Tensor]
ConfidenceTarget = Literal["iou", "one"]


def encode_targets(targets: list[Target], *, grid_size: int, num_classes: int, image_size: tuple[int, int],
                   dtype: torch.dtype = torch.float32) -> Tensor:
    """The paper's regression targets on the S x S grid, one object per cell.

    Args:
        targets: Per image, "boxes" (N, 4) xyxy in pixels of the input and "labels" (N,) in [0, num_classes).
        grid_size: S.
        num_classes: C.
        image_size: (height, width) of the input the boxes refer to.
        dtype: Floating type of the encoding (the loss passes the grid's).

    Returns:
        Per cell `[x, y, sqrt(w), sqrt(h), has_object, one-hot class]`; zeros in cells without an object.

    Shape:
        - Output: (len(targets), S, S, 5 + C), on the device of the first target's boxes.
    """
    s, (height, width) = grid_size, image_size
    device = targets[0]["boxes"].device if targets else torch.device("cpu")
    encoded = torch.zeros(len(targets), s, s, 5 + num_classes, device=device, dtype=dtype)   # (N, S, S, 5 + C)
    if not targets:
        return encoded
    boxes, labels, image = _concatenate(targets, num_classes, device, dtype)
    if boxes.numel() == 0:
        return encoded
    xyxy = (boxes / boxes.new_tensor([width, height, width, height])).clamp(0, 1)   # (M, 4) xyxy in [0, 1]
    cx, cy = (xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2
    w, h = xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]
    col = (cx * s).floor().long().clamp(max=s - 1)     # a centre on the right or bottom edge: the last cell
    row = (cy * s).floor().long().clamp(max=s - 1)
    keep = _largest_per_cell((image * s + row) * s + col, w * h)                   # (M',)
    values = torch.cat([torch.stack([cx * s - col, cy * s - row, w.sqrt(), h.sqrt(), torch.ones_like(w)], 1),
                        F.one_hot(labels, num_classes).to(dtype)], 1)             # (M, 5 + C)
    encoded[image[keep], row[keep], col[keep]] = values[keep]
    return encoded


def _concatenate(targets: list[Target], num_classes: int, device: torch.device,
                 dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    # All images' objects in one batch, checked: (M, 4) boxes, (M,) labels, (M,) image index.
    boxes, labels, image = [], [], []
    for index, target in enumerate(targets):
        b = target["boxes"].reshape(-1, 4).to(device, dtype)
        lab = target["labels"].reshape(-1).to(device, torch.int64)
        if b.shape[0] != lab.shape[0]:
            raise ValueError(f"target {index}: {b.shape[0]} boxes but {lab.shape[0]} labels")
        if not torch.isfinite(b).all() or (b[:, 2:] < b[:, :2]).any():
            raise ValueError(f"target {index}: boxes must be finite xyxy with x2 >= x1 and y2 >= y1, got {b.tolist()}")
        if lab.numel() and (lab.min() < 0 or lab.max() >= num_classes):
            raise ValueError(f"target {index}: labels must be in [0, {num_classes}), got {lab.tolist()}")
        boxes.append(b)
        labels.append(lab)
        image.append(torch.full_like(lab, index))
    return torch.cat(boxes), torch.cat(labels), torch.cat(image)


def _largest_per_cell(cell: Tensor, area: Tensor) -> Tensor:
    """Indices of the object kept in each occupied cell: the largest, the first of equals."""
    order = torch.argsort(area, descending=True, stable=True)                      # (M,)
    _, inverse = torch.unique(cell[order], return_inverse=True)                    # (M,) cell id of each
    position = torch.arange(order.numel(), device=cell.device)
    first = torch.full((int(inverse.max()) + 1,), order.numel(), device=cell.device)
    first = first.scatter_reduce(0, inverse, position, reduce="amin")              # (cells,) first in order
    return order[first]


def decode_boxes(cells: Tensor, image_size: tuple[int, int]) -> Tensor:
    """Boxes of the grid's predictors in input pixels.

    Args:
        cells: `[x, y, sqrt(w), sqrt(h)]` of each predictor, each clamped to [0, 1] before decoding.
        image_size: (height, width) of the input; (1, 1) gives coordinates relative to the image.

    Shape:
        - cells: (N, S, S, K, 4) for K predictors per cell.
        - Output: (N, S, S, K, 4) xyxy.
    """
    s, (height, width) = cells.shape[1], image_size
    cells = cells.clamp(0, 1)
    offsets = torch.arange(s, device=cells.device, dtype=cells.dtype)
    cx = (cells[..., 0] + offsets.view(1, 1, s, 1)) / s * width                    # (N, S, S, K), column on axis 2
    cy = (cells[..., 1] + offsets.view(1, s, 1, 1)) / s * height                   # row on axis 1
    w, h = cells[..., 2] ** 2 * width, cells[..., 3] ** 2 * height
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def decode_predictions(grid: Tensor, *, boxes_per_cell: int, image_size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Every predictor's box and class-specific confidences Pr(class | object) * confidence.

    Shape:
        - grid: (N, S, S, 5 * B + C) raw network output.
        - Output: boxes (N, S * S * B, 4) xyxy in input pixels, scores (N, S * S * B, C) in [0, 1].
    """
    n, s, k = grid.shape[0], grid.shape[1], boxes_per_cell
    predictors = grid[..., :5 * k].reshape(n, s, s, k, 5)                          # (N, S, S, B, 5)
    boxes = decode_boxes(predictors[..., :4], image_size)                          # (N, S, S, B, 4)
    confidence = predictors[..., 4].clamp(0, 1)                                    # (N, S, S, B)
    probabilities = grid[..., 5 * k:].clamp(0, 1)                                  # (N, S, S, C)
    scores = probabilities.unsqueeze(3) * confidence.unsqueeze(-1)                 # (N, S, S, B, C)
    return boxes.reshape(n, s * s * k, 4), scores.reshape(n, s * s * k, -1)


def box_iou_elementwise(a: Tensor, b: Tensor, eps: float = 1e-9) -> Tensor:
    """IoU of corresponding xyxy boxes, broadcast over leading axes.

    Shape:
        - a, b: (..., 4) xyxy, broadcastable.
        - Output: (...) in [0, 1]; 0 for two empty boxes.
    """
    top_left, bottom_right = torch.maximum(a[..., :2], b[..., :2]), torch.minimum(a[..., 2:], b[..., 2:])
    intersection = (bottom_right - top_left).clamp(min=0).prod(-1)
    area_a, area_b = (a[..., 2:] - a[..., :2]).prod(-1), (b[..., 2:] - b[..., :2]).prod(-1)
    return intersection / (area_a + area_b - intersection).clamp(min=eps)


def responsible_predictors(predicted: Tensor, truth: Tensor) -> tuple[Tensor, Tensor]:
    """Which of each cell's B predictors is responsible for the cell's object, and their IoUs with it.

    The highest IoU wins (the first on ties); if none overlaps, the nearest in (cx, cy, w, h), as Darknet.

    Shape:
        - predicted: (N, S, S, B, 4) raw `[x, y, sqrt(w), sqrt(h)]` of the predictors.
        - truth: (N, S, S, 4) the encoded target box of each cell.
        - Output: index (N, S, S) int64 in [0, B), IoU (N, S, S, B); meaningful in cells with an object.
    """
    boxes = decode_boxes(predicted, (1, 1))                                        # (N, S, S, B, 4) xyxy
    true_boxes = decode_boxes(truth.unsqueeze(3), (1, 1))                          # (N, S, S, 1, 4) xyxy
    iou = box_iou_elementwise(boxes, true_boxes)                                   # (N, S, S, B)
    centre_size = torch.cat([(boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]], -1)
    true_centre_size = torch.cat([(true_boxes[..., :2] + true_boxes[..., 2:]) / 2,
                                  true_boxes[..., 2:] - true_boxes[..., :2]], -1)
    distance = (centre_size - true_centre_size).square().sum(-1)                   # (N, S, S, B)
    index = torch.where(iou.amax(-1) > 0, iou.argmax(-1), distance.argmin(-1))     # (N, S, S)
    return index, iou


def yolov1_loss(grid: Tensor, targets: list[Target], *, boxes_per_cell: int, image_size: tuple[int, int],
                lambda_coord: float = 5.0, lambda_noobj: float = 0.5,
                confidence_target: ConfidenceTarget = "iou") -> dict[str, Tensor]:
    """The paper's sum-squared error (equation 3), divided by the batch size.

    Args:
        grid: Raw network output.
        targets: Per image, "boxes" (N, 4) xyxy in input pixels and "labels" (N,) int64.
        boxes_per_cell: B.
        image_size: (height, width) of the input the boxes refer to.
        lambda_coord: Weight of the responsible predictors' x, y, sqrt(w), sqrt(h) errors (paper: 5).
        lambda_noobj: Weight of the confidence error of predictors without an object (paper: 0.5).
        confidence_target: "iou" (the paper: IoU of the predicted box with the truth) or "one".

    Returns:
        "loss" (the total) and its weighted terms "loss_xy", "loss_wh", "loss_object", "loss_noobject",
        "loss_class", all scalars.

    Shape:
        - grid: (N, S, S, 5 * B + C).
    """
    if confidence_target not in ("iou", "one"):
        raise ValueError(f"confidence_target must be 'iou' or 'one', got {confidence_target!r}")
    if len(targets) != grid.shape[0]:
        raise ValueError(f"{grid.shape[0]} images but {len(targets)} targets")
    grid = grid.float() if grid.dtype.itemsize < 4 else grid                     # half precision: sum in float32
    n, s, k = grid.shape[0], grid.shape[1], boxes_per_cell
    encoded = encode_targets(targets, grid_size=s, num_classes=grid.shape[-1] - 5 * k, image_size=image_size,
                             dtype=grid.dtype).to(grid.device)                    # (N, S, S, 5 + C)
    has_object = encoded[..., 4] > 0                                               # (N, S, S)
    predictors = grid[..., :5 * k].reshape(n, s, s, k, 5)                          # (N, S, S, B, 5)
    with torch.no_grad():
        index, iou = responsible_predictors(predictors[..., :4], encoded[..., :4])
    responsible = F.one_hot(index, k).bool() & has_object.unsqueeze(-1)            # (N, S, S, B)
    chosen = predictors[responsible]                                               # (P, 5)
    truth = encoded.unsqueeze(3).expand(-1, -1, -1, k, -1)[responsible]            # (P, 5 + C)
    confidence_truth = iou[responsible] if confidence_target == "iou" else torch.ones_like(iou[responsible])
    terms = {
        "loss_xy": lambda_coord * (chosen[:, :2] - truth[:, :2]).square().sum(),
        "loss_wh": lambda_coord * (chosen[:, 2:4] - truth[:, 2:4]).square().sum(),
        "loss_object": (chosen[:, 4] - confidence_truth).square().sum(),
        "loss_noobject": lambda_noobj * predictors[..., 4][~responsible].square().sum(),
        "loss_class": (grid[..., 5 * k:] - encoded[..., 5:])[has_object].square().sum(),
    }
    terms = {name: value / max(n, 1) for name, value in terms.items()}
    return {"loss": sum(terms.values()), **terms}


@dataclass(frozen=True)
class YoloV1Loss:
    """`yolov1_loss` with its weights bound: what a YOLO v1 model holds as its criterion."""
    lambda_coord: float = 5.0
    lambda_noobj: float = 0.5
    confidence_target: ConfidenceTarget = "iou"

    def __post_init__(self) -> None:
        if self.confidence_target not in ("iou", "one"):
            raise ValueError(f"confidence_target must be 'iou' or 'one', got {self.confidence_target!r}")
        if self.lambda_coord < 0 or self.lambda_noobj < 0:
            raise ValueError(f"loss weights must be >= 0, got lambda_coord={self.lambda_coord}, "
                             f"lambda_noobj={self.lambda_noobj}")

    def __call__(self, grid: Tensor, targets: list[Target], *, boxes_per_cell: int,
                 image_size: tuple[int, int]) -> dict[str, Tensor]:
        return yolov1_loss(grid, targets, boxes_per_cell=boxes_per_cell, image_size=image_size,
                           lambda_coord=self.lambda_coord, lambda_noobj=self.lambda_noobj,
                           confidence_target=self.confidence_target)
