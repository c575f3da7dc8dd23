"""SSD's matching strategy and MultiBox loss: Liu et al., "SSD: Single Shot MultiBox Detector" (ECCV 2016),
section 2.2 "Training".

Matching: each ground-truth box is matched to the default box with the best Jaccard overlap (IoU), then every
default box is matched to the ground truth it overlaps best when that IoU is at least `iou_threshold` (0.5; the
paper says "higher than", the authors' Caffe code and torchvision use >=). Unlike torchvision's `SSDMatcher`,
two ground truths that share their best default box do not take it from each other: the shared ones are
resolved by the Caffe code's greedy bipartite matching, so every ground truth keeps at least one default box.

Loss, with N the number of matched (positive) default boxes over the batch:

    L = (L_conf + alpha * L_loc) / N            (0 when N = 0, as in the paper)

L_loc is smooth L1 (beta 1, as the paper via Fast R-CNN, and torchvision) between the predicted offsets and the
matched box encoded against its default box, `(dx, dy, dw, dh)` with variances (0.1, 0.1, 0.2, 0.2), i.e.
torchvision's `BoxCoder(weights=(10, 10, 5, 5))`. L_conf is the softmax cross-entropy over the positives (their
class) plus the hardest negatives (background, class 0): per image, the negatives with the highest loss, at
most `neg_pos_ratio` (3) per positive. An image without positives contributes no negatives (as in Caffe,
torchvision and MMDetection) unless `min_negatives` asks for some; their loss is then divided by max(N, 1).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection import _utils as det_utils
from torchvision.ops import box_iou

Target = dict[str, Tensor]


def match_default_boxes(gt_boxes: Tensor, default_boxes: Tensor, iou_threshold: float = 0.5) -> Tensor:
    """The ground truth each default box is matched to, or -1 for background.

    Args:
        gt_boxes: Ground-truth boxes, xyxy, with positive area.
        default_boxes: Default boxes (anchors), xyxy, in the same coordinates.
        iou_threshold: Default boxes overlapping a ground truth at least this much are matched to it.

    Returns:
        Index into `gt_boxes` per default box; every ground truth appears at least once when G <= A.

    Shape:
        - gt_boxes: (G, 4). default_boxes: (A, 4). Output: (A,) int64.
    """
    num_anchors = default_boxes.shape[0]
    if gt_boxes.shape[0] == 0:
        return torch.full((num_anchors,), -1, dtype=torch.int64, device=default_boxes.device)
    iou = box_iou(gt_boxes, default_boxes)                                      # (G, A)
    matches = det_utils.Matcher(iou_threshold, iou_threshold)(iou)             # (A,) gt index, negative if none
    best = _best_default_boxes(iou)                                             # (G,)
    matches[best] = torch.arange(best.shape[0], device=best.device)
    return matches.clamp(min=-1)


def _best_default_boxes(iou: Tensor) -> Tensor:
    """One default box per ground truth, its best; distinct boxes for ground truths that share a best one.

    Shape:
        - iou: (G, A). Output: (G,) int64.
    """
    best = iou.argmax(dim=1)                                                    # (G,)
    if best.unique().numel() == best.numel():
        return best
    # Caffe's bipartite matching: repeatedly take the highest remaining (gt, box) pair, retire its row and column.
    iou = iou.clone()
    num_anchors = iou.shape[1]
    for _ in range(min(iou.shape)):
        flat = int(iou.argmax())
        gt, anchor = divmod(flat, num_anchors)
        best[gt] = anchor
        iou[gt, :] = -1.0
        iou[:, anchor] = -1.0
    return best


def hard_negatives(cls_loss: Tensor, positive: Tensor, *, neg_pos_ratio: float, min_negatives: int = 0) -> Tensor:
    """The hardest negatives per image: the non-positives with the highest loss, `neg_pos_ratio` per positive.

    Shape:
        - cls_loss: (B, A) per-default-box classification loss against the background class.
        - positive: (B, A) bool.
        - Output: (B, A) bool, disjoint from `positive`.
    """
    num_positive = positive.sum(dim=1, keepdim=True)                                   # (B, 1)
    num_negative = (num_positive * neg_pos_ratio).floor().clamp(min=min_negatives)    # (B, 1)
    loss = cls_loss.detach().masked_fill(positive, float("-inf"))                      # (B, A)
    rank = loss.argsort(dim=1, descending=True).argsort(dim=1)                         # (B, A) 0 = hardest
    return (rank < num_negative) & ~positive


@dataclass(frozen=True)
class MultiBoxLoss:
    """SSD's training objective (module docstring), with its matching.

    Args:
        iou_threshold: Matching threshold of default boxes to ground truth.
        neg_pos_ratio: Hard negatives kept per positive, per image.
        min_negatives: Hard negatives kept in every image even without positives (0: the paper's).
        alpha: Weight of the localisation loss.
    """

    iou_threshold: float = 0.5
    neg_pos_ratio: float = 3.0
    min_negatives: int = 0
    alpha: float = 1.0

    def __call__(self, cls_logits: Tensor, box_regression: Tensor, default_boxes: Tensor,
                 targets: list[Target]) -> dict[str, Tensor]:
        """Named losses: "loss" (the total), "classification" and "box_regression", each divided by N.

        Args:
            cls_logits: Class scores per default box, background first.
            box_regression: Predicted offsets (dx, dy, dw, dh) of each default box.
            default_boxes: Default boxes, xyxy in input pixels.
            targets: Per image, "boxes" (G, 4) xyxy in input pixels and "labels" (G,) in [0, K).

        Shape:
            - cls_logits: (B, A, K + 1). box_regression: (B, A, 4). default_boxes: (A, 4).
        """
        if len(targets) != cls_logits.shape[0]:
            raise ValueError(f"SSD loss: {cls_logits.shape[0]} images but {len(targets)} targets")
        box_coder = det_utils.BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
        anchors = default_boxes.float()
        classes, loc_losses = [], []
        for index, target in enumerate(targets):
            boxes, labels = _checked(target, index, cls_logits.shape[-1] - 1, anchors.device)
            matches = match_default_boxes(boxes, anchors, self.iou_threshold)    # (A,)
            matched = matches >= 0
            image_classes = torch.zeros_like(matches)                               # (A,) 0 = background
            image_classes[matched] = labels[matches[matched]] + 1
            classes.append(image_classes)
            encoded = box_coder.encode_single(boxes[matches[matched]], anchors[matched])  # (P_i, 4)
            loc_losses.append(F.smooth_l1_loss(box_regression[index][matched].float(), encoded, reduction="sum"))
        class_target = torch.stack(classes)                                          # (B, A)
        positive = class_target > 0                                                  # (B, A)
        cls_loss = F.cross_entropy(cls_logits.float().flatten(0, 1), class_target.flatten(),
                                   reduction="none").view_as(class_target)           # (B, A)
        negative = hard_negatives(cls_loss, positive, neg_pos_ratio=self.neg_pos_ratio,
                                  min_negatives=self.min_negatives)
        normaliser = positive.sum().clamp(min=1).float()
        classification = cls_loss[positive | negative].sum() / normaliser
        localisation = torch.stack(loc_losses).sum() / normaliser
        return {"loss": classification + self.alpha * localisation, "classification": classification,
                "box_regression": localisation}


def _checked(target: Target, index: int, num_classes: int, device: torch.device) -> tuple[Tensor, Tensor]:
    # One image's boxes (G, 4) and labels (G,), validated: SSD's log-size encoding needs positive areas.
    boxes = target["boxes"].reshape(-1, 4).float().to(device)
    labels = target["labels"].reshape(-1).long().to(device)
    if boxes.shape[0] != labels.shape[0]:
        raise ValueError(f"target {index}: {boxes.shape[0]} boxes but {labels.shape[0]} labels")
    if not torch.isfinite(boxes).all() or (boxes[:, 2:] <= boxes[:, :2]).any():
        raise ValueError(f"target {index}: boxes must be finite xyxy with x2 > x1 and y2 > y1, got {boxes.tolist()}")
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"target {index}: labels must be in [0, {num_classes}), got {labels.tolist()}")
    return boxes, labels
