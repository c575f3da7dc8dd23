"""Faster R-CNN: Ren, He, Girshick and Sun, "Faster R-CNN: Towards Real-Time Object Detection with Region
Proposal Networks" (NeurIPS 2015, arXiv:1506.01497), behind the detector contract (models/contracts.py).

A region proposal network slides over the backbone's feature maps and scores anchors (boxes of several
sizes and aspect ratios at every location) as object or not, regressing each towards a box; the best
proposals after NMS are pooled to a fixed size (RoI pooling) and a box head classifies them into K + 1
classes (0 = background) with a class-specific box refinement.

The parts are torchvision's (see `faster_rcnn_parts`), so its checkpoints load and its outputs are matched
exactly; the flow is ours, since torchvision's `GeneralizedRCNN` returns losses in training and detections
in evaluation, and resizes and normalises images itself. Here `forward` returns one `FasterRCNNOutput` in
both modes, `loss` reads only that output, and images arrive batched at a fixed size in [0, 1].
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import fastrcnn_loss
from torchvision.ops import clip_boxes_to_image

from ninshiki.models.contracts import Target
from ninshiki.models.detect.common import IMAGENET_MEAN, IMAGENET_STD, ImageNormalizer, select_detections
from ninshiki.models.detect.faster_rcnn_config import FasterRCNNConfig
from ninshiki.models.detect.faster_rcnn_parts import build_roi_heads, build_rpn
from ninshiki.models.detect.faster_rcnn_stages import check_inputs, propose, score_regions
from ninshiki.structures import Detections

_MIN_BOX_SIZE = 1e-2   # detections narrower or lower than this (pixels) are dropped, as torchvision does


class FasterRCNNOutput(NamedTuple):
    """Raw output of `FasterRCNN.forward`, the same type in training and evaluation mode.

    Boxes are xyxy in input pixels. Class columns and `sample_labels` count the background as class 0, so
    dataset class k is column k + 1. Fields derived from targets are None when `forward` had no targets.
    The RoI head scores `roi_boxes` for detection: in evaluation mode every RPN proposal; in training
    mode with targets the sampled proposals (ground truth included, so detections then are for monitoring,
    not evaluation). With targets in evaluation mode it scores both sets, the samples for the loss.
    """
    image_size: tuple[int, int]                 # (H, W) of the input batch
    anchors: list[Tensor]                       # B x (A, 4) xyxy, levels concatenated
    rpn_objectness: Tensor                      # (B, A) logits
    rpn_box_deltas: Tensor                      # (B, A, 4) encoded against the anchors, weights (1, 1, 1, 1)
    proposals: list[Tensor]                     # B x (P_i, 4) after NMS, best first
    rpn_labels: Tensor | None                   # (B, A) float: 1 object, 0 background, -1 not sampled
    rpn_regression_targets: Tensor | None       # (B, A, 4)
    roi_boxes: list[Tensor]                     # B x (R_i, 4) the proposals `class_logits` score
    class_logits: Tensor                        # (sum R_i, K + 1)
    box_regression: Tensor                      # (sum R_i, 4 (K + 1)) encoded with the box coder's weights
    sample_boxes: list[Tensor] | None           # B x (S_i, 4) proposals sampled against the targets
    sample_class_logits: Tensor | None          # (sum S_i, K + 1)
    sample_box_regression: Tensor | None        # (sum S_i, 4 (K + 1))
    sample_labels: Tensor | None                # (sum S_i,) int64 in [0, K], 0 = background
    sample_regression_targets: Tensor | None    # (sum S_i, 4)


class FasterRCNN(nn.Module):
    """Backbone -> RPN -> RoI pooling -> box head -> K + 1 class scores and per-class boxes.

    Args:
        backbone: Returns an ordered dict of feature maps, all with `out_channels` channels, one per
            entry of `config.anchor_sizes`; `strides` lists their strides.
        roi_pool: Pools (R, C, P, P) features of boxes, with `MultiScaleRoIAlign`'s call signature.
        box_head: (R, C, P, P) -> (R, representation_size).
        representation_size: Width of the box head's output.
        num_classes: Object classes K, without the background.
        config: Anchors, sampling, proposal counts, detection output.
        input_size: The side of the square images the model trains at.
        in_channels: Image channels; mean and std are ImageNet's (their average for other than 3).
        first_conv: Name of the first convolution, for `load_weights`.

    Shape:
        - images: (B, in_channels, H, W) in [0, 1].
        - targets: B dicts, "boxes" (N_i, 4) float xyxy input pixels, "labels" (N_i,) int64 in [0, K).
    """

    classifier_names: tuple[str, ...] = ("roi_heads.box_predictor.cls_score", "roi_heads.box_predictor.bbox_pred")

    def __init__(self, *, backbone: nn.Module, roi_pool: nn.Module, box_head: nn.Module, representation_size: int,
                 num_classes: int, config: FasterRCNNConfig, input_size: int, in_channels: int = 3,
                 first_conv: str = "") -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if in_channels == 3 else (
            (sum(IMAGENET_MEAN) / 3,) * in_channels, (sum(IMAGENET_STD) / 3,) * in_channels)
        self.normalizer = ImageNormalizer(mean, std)
        self.backbone = backbone
        self.rpn = build_rpn(config, in_channels=backbone.out_channels, num_levels=len(backbone.strides))
        self.roi_heads = build_roi_heads(config, roi_pool=roi_pool, box_head=box_head,
                                         representation_size=representation_size, num_classes=num_classes)
        self.config = config
        self.num_classes, self.input_size, self.in_channels = num_classes, input_size, in_channels
        self.score_threshold, self.nms_iou, self.max_detections = (
            config.score_threshold, config.nms_iou, config.max_detections)
        self.first_conv = first_conv
        self._frozen_norms: list[str] = []

    def freeze_batchnorm(self, module: nn.Module) -> None:
        """Keep the batch norms under `module` in evaluation mode with fixed parameters, in training too.

        Numerically torchvision's `FrozenBatchNorm2d` (the fine-tuning recipe of its pretrained detectors),
        with `BatchNorm2d`'s state-dict keys, so checkpoints with and without frozen norms both load.
        """
        owned = {id(m): name for name, m in self.named_modules()}
        for norm in module.modules():
            if isinstance(norm, nn.modules.batchnorm._BatchNorm):
                norm.requires_grad_(False)
                norm.eval()
                # By name, not reference: the module may be swapped later (SyncBatchNorm conversion).
                self._frozen_norms.append(owned[id(norm)])

    def train(self, mode: bool = True) -> FasterRCNN:
        super().train(mode)
        for name in self._frozen_norms:
            self.get_submodule(name).eval()
        return self

    def forward(self, images: Tensor, targets: list[Target] | None = None) -> FasterRCNNOutput:
        """Proposals and their class scores and box refinements; samples against `targets` when given."""
        check_inputs(images, targets, self.in_channels, self.num_classes)
        size = (int(images.shape[-2]), int(images.shape[-1]))
        sizes = [size] * images.shape[0]
        features = self.backbone(self.normalizer(images))      # {name: (B, C, H / s, W / s)}
        # torchvision's RoI heads count the background as class 0.
        shifted = None if targets is None else [
            {"boxes": t["boxes"].float(), "labels": t["labels"].to(torch.int64) + 1} for t in targets]
        rpn = propose(self.rpn, ImageList(images, sizes), list(features.values()), shifted)
        sampled, scored = score_regions(self.roi_heads, features, rpn.proposals, sizes, shifted,
                                        score_all=not self.training or targets is None)
        return FasterRCNNOutput(size, rpn.anchors, rpn.objectness, rpn.box_deltas, rpn.proposals, rpn.labels,
                                rpn.regression_targets, scored.boxes, scored.class_logits, scored.box_regression,
                                *sampled)

    def loss(self, raw: FasterRCNNOutput, targets: list[Target]) -> dict[str, Tensor]:
        """The RPN's and the RoI head's losses, as torchvision computes them, from `raw` alone.

        RPN: binary cross-entropy over the sampled anchors, smooth L1 (beta 1/9) over the positive ones,
        summed and divided by the sampled count. RoI head: cross-entropy over the sampled proposals, smooth L1
        (beta 1/9) of the ground-truth class's box over the positive ones, divided by the sampled count.
        `targets` are those `raw` was sampled against (only their count is checked).
        """
        if raw.rpn_labels is None or raw.sample_labels is None:
            raise ValueError("loss needs the output of forward(images, targets): this output was computed "
                             "without targets, so nothing was sampled against the ground truth")
        if len(targets) != raw.rpn_labels.shape[0]:
            raise ValueError(f"loss got {len(targets)} targets for a batch of {raw.rpn_labels.shape[0]} images")
        rpn_objectness, rpn_box = rpn_loss(raw.rpn_objectness, raw.rpn_box_deltas, raw.rpn_labels,
                                           raw.rpn_regression_targets)
        roi_classifier, roi_box = fastrcnn_loss(raw.sample_class_logits.float(), raw.sample_box_regression.float(),
                                                [raw.sample_labels], [raw.sample_regression_targets.float()])
        total = rpn_objectness + rpn_box + roi_classifier + roi_box
        return {"loss": total, "rpn_objectness": rpn_objectness, "rpn_box": rpn_box,
                "roi_classifier": roi_classifier, "roi_box": roi_box}

    @torch.no_grad()
    def postprocess(self, raw: FasterRCNNOutput, sizes: list[tuple[int, int]] | None = None) -> list[Detections]:
        """Per-class boxes decoded from `raw.roi_boxes`, softmax scores without the background, per-class NMS.

        Boxes are clipped to `sizes[i] = (height, width)` (default: the input size); those narrower or lower
        than 0.01 px after clipping are dropped, then `select_detections` applies `score_threshold`, `nms_iou`
        and `max_detections`.
        """
        batch = len(raw.roi_boxes)
        sizes = [raw.image_size] * batch if sizes is None else sizes
        if len(sizes) != batch:
            raise ValueError(f"postprocess got {len(sizes)} sizes for a batch of {batch} images")
        counts = [len(b) for b in raw.roi_boxes]
        if sum(counts) == 0:
            return [Detections.empty(raw.class_logits.device) for _ in range(batch)]
        boxes = self.roi_heads.box_coder.decode(raw.box_regression.float(), [b.float() for b in raw.roi_boxes])
        scores = F.softmax(raw.class_logits.float(), dim=-1)                      # (R, K + 1)
        results = []
        for image_boxes, image_scores, size in zip(boxes.split(counts), scores.split(counts), sizes):
            image_boxes = clip_boxes_to_image(image_boxes[:, 1:], size)            # (R_i, K, 4)
            sides = torch.minimum(image_boxes[..., 2] - image_boxes[..., 0], image_boxes[..., 3] - image_boxes[..., 1])
            image_scores = image_scores[:, 1:] * (sides >= _MIN_BOX_SIZE)          # (R_i, K)
            results.append(select_detections(image_boxes, image_scores, score_threshold=self.score_threshold,
                                              nms_iou=self.nms_iou, max_detections=self.max_detections, size=size))
        return results


def rpn_loss(objectness: Tensor, deltas: Tensor, labels: Tensor, regression_targets: Tensor) -> tuple[Tensor, Tensor]:
    """(objectness loss, box loss) of the RPN over the sampled anchors (`labels` >= 0).

    Shape:
        - objectness: (B, A) logits; deltas, regression_targets: (B, A, 4); labels: (B, A) in {-1, 0, 1}.
    """
    sampled = labels >= 0                                                   # (B, A)
    positive = labels > 0                                                   # (B, A)
    count = sampled.sum().clamp(min=1)
    box = F.smooth_l1_loss(deltas[positive].float(), regression_targets[positive].float(), beta=1 / 9,
                           reduction="sum") / count
    objectness_loss = F.binary_cross_entropy_with_logits(objectness[sampled].float(), labels[sampled].float())
    return objectness_loss, box

