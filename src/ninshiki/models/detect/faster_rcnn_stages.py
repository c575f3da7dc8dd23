"""The two stages of Faster R-CNN's forward pass (Ren et al., NeurIPS 2015), on torchvision's modules.

`propose` is torchvision's `RegionProposalNetwork.forward` and `score_regions` its `RoIHeads.forward`
(box branch) taken apart, so that both run in training and evaluation mode alike, keep every intermediate
the loss needs, and draw random samples in the same order as torchvision (RPN anchors, then proposals).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork, concat_box_prediction_layers

from ninshiki.models.contracts import Target


class Proposals(NamedTuple):
    anchors: list[Tensor]                   # B x (A, 4) xyxy
    objectness: Tensor                      # (B, A) logits
    box_deltas: Tensor                      # (B, A, 4)
    proposals: list[Tensor]                 # B x (P_i, 4) xyxy after NMS
    labels: Tensor | None                   # (B, A) 1 object, 0 background, -1 not sampled
    regression_targets: Tensor | None       # (B, A, 4)


class Samples(NamedTuple):
    boxes: list[Tensor] | None              # B x (S_i, 4) sampled proposals, ground truth appended before sampling
    class_logits: Tensor | None             # (sum S_i, K + 1)
    box_regression: Tensor | None           # (sum S_i, 4 (K + 1))
    labels: Tensor | None                   # (sum S_i,) int64, 0 = background
    regression_targets: Tensor | None       # (sum S_i, 4)


class Scored(NamedTuple):
    boxes: list[Tensor]                     # B x (R_i, 4)
    class_logits: Tensor                    # (sum R_i, K + 1)
    box_regression: Tensor                  # (sum R_i, 4 (K + 1))


def check_inputs(images: Tensor, targets: list[Target] | None, in_channels: int, num_classes: int) -> None:
    """Raise a ValueError naming the image and field when images or targets break the detector contract."""
    if images.dim() != 4 or images.shape[1] != in_channels or not images.is_floating_point():
        raise ValueError(f"images must be a float tensor (B, {in_channels}, H, W) in [0, 1], got "
                         f"{images.dtype} {tuple(images.shape)}")
    if targets is None:
        return
    if len(targets) != images.shape[0]:
        raise ValueError(f"got {len(targets)} targets for a batch of {images.shape[0]} images")
    for index, target in enumerate(targets):
        if "boxes" not in target or "labels" not in target:
            raise ValueError(f"target {index} needs 'boxes' and 'labels', has {sorted(target)}")
        boxes, labels = target["boxes"], target["labels"]
        if boxes.dim() != 2 or boxes.shape[1] != 4 or labels.shape != (boxes.shape[0],):
            raise ValueError(f"target {index}: boxes must be (N, 4) xyxy and labels (N,), got "
                             f"{tuple(boxes.shape)} and {tuple(labels.shape)}")
        if labels.is_floating_point():
            raise ValueError(f"target {index}: labels must be integers (int64), got {labels.dtype}")
    # One device sync for the whole batch; the slow search for the culprit only when something is wrong.
    boxes, labels = torch.cat([t["boxes"] for t in targets]), torch.cat([t["labels"] for t in targets])
    if len(labels) and bool((_bad_labels(labels, num_classes) | _bad_boxes(boxes)).any()):
        _raise_first_problem(targets, num_classes)


def _bad_labels(labels: Tensor, num_classes: int) -> Tensor:
    return (labels < 0) | (labels >= num_classes)


def _bad_boxes(boxes: Tensor) -> Tensor:
    return ~torch.isfinite(boxes).all(dim=1) | (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])


def _raise_first_problem(targets: list[Target], num_classes: int) -> None:
    for index, target in enumerate(targets):
        labels, bad = target["labels"], _bad_boxes(target["boxes"])
        if bool(_bad_labels(labels, num_classes).any()):
            raise ValueError(f"target {index}: labels must be in [0, {num_classes}), got "
                             f"{int(labels.min())}..{int(labels.max())}")
        if bool(bad.any()):
            first = int(bad.nonzero()[0])
            raise ValueError(f"target {index}: box {first} {target['boxes'][first].tolist()} is not a finite xyxy "
                             f"box with x2 > x1 and y2 > y1")

def propose(rpn: RegionProposalNetwork, images: ImageList, features: list[Tensor],
            targets: list[Target] | None) -> Proposals:
    """Anchors, RPN outputs and post-NMS proposals; anchor labels sampled against `targets` when given.

    `targets` count the background as class 0. Proposals are detached: as in the paper's approximate joint
    training, no gradient flows from the RoI head into the proposal coordinates.
    """
    batch = len(images.image_sizes)
    objectness, deltas = rpn.head(features)                          # per level (B, a, h, w), (B, 4a, h, w)
    # Boxes stay float32 under autocast: bfloat16 resolves 800 px coordinates to 4 px. The anchor generator
    # reads only the maps' sizes, dtype and device, so it gets empty float32 stand-ins.
    grids = [torch.empty(f.shape[-2:], device=f.device) for f in features]
    anchors = rpn.anchor_generator(images, grids)                     # B x (A, 4)
    per_level = [o[0].numel() for o in objectness]
    objectness, deltas = concat_box_prediction_layers(objectness, deltas)   # (B * A, 1), (B * A, 4)
    objectness, deltas = objectness.float(), deltas.float()
    decoded = rpn.box_coder.decode(deltas.detach(), anchors).view(batch, -1, 4)   # (B, A, 4)
    proposals, _ = rpn.filter_proposals(decoded, objectness, images.image_sizes, per_level)
    labels = regression_targets = None
    if targets is not None:
        matched_labels, matched_boxes = rpn.assign_targets_to_anchors(anchors, targets)
        regression_targets = torch.stack(rpn.box_coder.encode(matched_boxes, anchors))   # (B, A, 4)
        positive, negative = rpn.fg_bg_sampler(matched_labels)
        labels = torch.stack([torch.where(p.bool(), 1.0, torch.where(n.bool(), 0.0, -1.0))
                              for p, n in zip(positive, negative)])    # (B, A)
    return Proposals(anchors, objectness.view(batch, -1), deltas.view(batch, -1, 4), proposals, labels,
                     regression_targets)


def score_regions(roi_heads: RoIHeads, features: dict[str, Tensor], proposals: list[Tensor],
                  sizes: list[tuple[int, int]], targets: list[Target] | None, *,
                  score_all: bool) -> tuple[Samples, Scored]:
    """Box-head outputs for proposals sampled against `targets` (if given) and for all of them (if `score_all`).

    Without `score_all` the sampled proposals are the scored ones (training: one pass of the head).
    """
    samples = Samples(None, None, None, None, None)
    if targets is not None:
        boxes, _, labels, regression_targets = roi_heads.select_training_samples(list(proposals), targets)
        logits, regression = _predict(roi_heads, features, boxes, sizes)
        samples = Samples(boxes, logits, regression, torch.cat(labels), torch.cat(regression_targets))
    if not score_all:
        return samples, Scored(samples.boxes, samples.class_logits, samples.box_regression)
    logits, regression = _predict(roi_heads, features, proposals, sizes)
    return samples, Scored(proposals, logits, regression)


def _predict(roi_heads: RoIHeads, features: dict[str, Tensor], boxes: list[Tensor],
             sizes: list[tuple[int, int]]) -> tuple[Tensor, Tensor]:
    pooled = roi_heads.box_roi_pool(features, boxes, sizes)          # (R, C, P, P)
    return roi_heads.box_predictor(roi_heads.box_head(pooled))        # (R, K + 1), (R, 4 (K + 1))
