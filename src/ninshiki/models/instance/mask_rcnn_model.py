"""Mask R-CNN: He, Gkioxari, Dollár and Girshick, "Mask R-CNN" (ICCV 2017, arXiv:1703.06870), behind the
detector contract (models/contracts.py).

Faster R-CNN with a third output per RoI: a small fully convolutional head on 14x14 RoIAlign features
predicts one 28x28 binary mask per class, trained with a per-pixel sigmoid cross-entropy on the mask of
the ground-truth class only (the paper's decoupling of masks from classification). At test time the mask
head runs on the final detections, and each detection's mask of its predicted class is resized into its
box and thresholded at 0.5.

The parts are torchvision's (`MaskRCNNHeads`, `MaskRCNNPredictor`, `project_masks_on_boxes`,
`paste_masks_in_image`), held by the `RoIHeads` under torchvision's names, so its checkpoints load; the flow
is ours, as for `FasterRCNN`. Since the masks of the final detections depend on `postprocess`'s settings and
sizes, `forward` keeps the feature maps in its output and `postprocess` runs the mask head on the detections.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import maskrcnn_inference, paste_masks_in_image, project_masks_on_boxes
from torchvision.ops import MultiScaleRoIAlign, box_iou

from ninshiki.models.contracts import Target
from ninshiki.models.detect.faster_rcnn_model import FasterRCNN, FasterRCNNOutput
from ninshiki.models.detect.faster_rcnn_stages import check_inputs, propose, score_regions
from ninshiki.structures import Detections

MASK_POOL_SIZE = 14   # RoIAlign output of the mask branch; the predictor's transposed convolution doubles it


class MaskRCNNOutput(NamedTuple):
    """Raw output of `MaskRCNN.forward`, the same type in training and evaluation mode.

    `detection` is Faster R-CNN's raw output (see `FasterRCNNOutput`). The mask fields are None when `forward`
    had no targets; with targets they describe the positive sampled proposals (ground truth included), the
    only RoIs the mask loss is defined on. Mask classes count the background as 0, as the box classes do.
    """
    detection: FasterRCNNOutput
    features: OrderedDict[str, Tensor]          # {level: (B, C, H / s, W / s)}, detached, for `postprocess`
    mask_boxes: list[Tensor] | None             # B x (P_i, 4) xyxy positive samples
    mask_logits: Tensor | None                  # (sum P_i, K + 1, M, M) with M = 2 * MASK_POOL_SIZE
    mask_labels: Tensor | None                  # (sum P_i,) int64 in [1, K], the matched ground truth's class
    mask_targets: Tensor | None                 # (sum P_i, M, M) float in [0, 1], its mask resampled on the box


class MaskRCNN(FasterRCNN):
    """Faster R-CNN (see `FasterRCNN`) plus a mask branch: RoIAlign 14x14 -> 3x3 convolutions with ReLU ->
    2x2 transposed convolution with ReLU -> 1x1 convolution to K + 1 mask logits of 28x28.

    Args:
        mask_layers: Output channels of the 3x3 convolutions (the paper's FPN head: four of 256); the
            transposed convolution keeps the last width.
        mask_threshold: Pasted mask probabilities above it are the object (a plain attribute).
        **detector: `FasterRCNN`'s keyword arguments; its `roi_pool` must be a `MultiScaleRoIAlign`, whose
            feature levels and sampling ratio the mask branch reuses.

    Shape:
        - images: (B, in_channels, H, W) in [0, 1].
        - targets: B dicts, "boxes" (N_i, 4) float xyxy input pixels, "labels" (N_i,) int64 in [0, K) and
          "masks" (N_i, H, W) uint8 or bool, 1 on the object, in input pixels.
    """

    classifier_names: tuple[str, ...] = (*FasterRCNN.classifier_names, "roi_heads.mask_predictor.mask_fcn_logits")

    def __init__(self, *, mask_layers: tuple[int, ...] = (256, 256, 256, 256), mask_threshold: float = 0.5,
                 **detector: Any) -> None:
        super().__init__(**detector)
        box_pool = self.roi_heads.box_roi_pool
        if not isinstance(box_pool, MultiScaleRoIAlign):
            raise TypeError(f"MaskRCNN needs a MultiScaleRoIAlign roi_pool, got {type(box_pool).__name__}")
        if not mask_layers or any(int(c) < 1 for c in mask_layers):
            raise ValueError(f"mask_layers must be one or more positive channel counts, got {mask_layers}")
        mask_layers = tuple(int(c) for c in mask_layers)
        # Assigned to torchvision's RoIHeads under its attribute names: the checkpoints' keys.
        self.roi_heads.mask_roi_pool = MultiScaleRoIAlign(featmap_names=list(box_pool.featmap_names),
                                                          output_size=MASK_POOL_SIZE,
                                                          sampling_ratio=box_pool.sampling_ratio)
        self.roi_heads.mask_head = MaskRCNNHeads(self.backbone.out_channels, list(mask_layers), 1)
        self.roi_heads.mask_predictor = MaskRCNNPredictor(mask_layers[-1], mask_layers[-1], self.num_classes + 1)
        self.mask_threshold = mask_threshold

    def forward(self, images: Tensor, targets: list[Target] | None = None) -> MaskRCNNOutput:
        """`FasterRCNN.forward`, plus mask logits and targets for the positive samples when targets are given."""
        check_inputs(images, targets, self.in_channels, self.num_classes)
        check_masks(images, targets)
        size = (int(images.shape[-2]), int(images.shape[-1]))
        sizes = [size] * images.shape[0]
        features = self.backbone(self.normalizer(images))      # {name: (B, C, H / s, W / s)}
        # torchvision's RoI heads count the background as class 0 and, holding a mask head, insist on masks.
        shifted = None if targets is None else [
            {"boxes": t["boxes"].float(), "labels": t["labels"].to(torch.int64) + 1, "masks": t["masks"]}
            for t in targets]
        rpn = propose(self.rpn, ImageList(images, sizes), list(features.values()), shifted)
        sampled, scored = score_regions(self.roi_heads, features, rpn.proposals, sizes, shifted,
                                        score_all=not self.training or targets is None)
        detection = FasterRCNNOutput(size, rpn.anchors, rpn.objectness, rpn.box_deltas, rpn.proposals, rpn.labels,
                                     rpn.regression_targets, scored.boxes, scored.class_logits,
                                     scored.box_regression, *sampled)
        mask_boxes = mask_logits = mask_labels = mask_targets = None
        if shifted is not None:
            mask_boxes, mask_labels, mask_targets = positive_mask_targets(
                self.roi_heads.proposal_matcher, sampled.boxes, sampled.labels, shifted, 2 * MASK_POOL_SIZE)
            mask_logits = self._mask_logits(features, mask_boxes, sizes)
        detached = OrderedDict((name, f.detach()) for name, f in features.items())
        return MaskRCNNOutput(detection, detached, mask_boxes, mask_logits, mask_labels, mask_targets)

    def loss(self, raw: MaskRCNNOutput, targets: list[Target]) -> dict[str, Tensor]:
        """`FasterRCNN.loss` plus "mask", the mean binary cross-entropy of the ground-truth class's mask
        logits over the positive samples' M x M pixels (0 with the graph kept when there are none)."""
        losses = super().loss(raw.detection, targets)
        mask = mask_loss(raw.mask_logits, raw.mask_labels, raw.mask_targets)
        return {**losses, "loss": losses["loss"] + mask, "mask": mask}

    @torch.no_grad()
    def postprocess(self, raw: MaskRCNNOutput, sizes: list[tuple[int, int]] | None = None) -> list[Detections]:
        """`FasterRCNN.postprocess`'s detections, each with its mask: probability > `mask_threshold`.

        Masks are (N_i, h_i, w_i) bool over `sizes[i] = (h_i, w_i)`, the top-left region of the input the
        boxes are clipped to (default: all of it).
        """
        detections = super().postprocess(raw.detection, sizes)
        sizes = [raw.detection.image_size] * len(detections) if sizes is None else sizes
        probabilities = self.mask_probabilities(raw, detections, sizes)
        return [Detections(d.boxes, d.scores, d.labels, p > self.mask_threshold)
                for d, p in zip(detections, probabilities)]

    @torch.no_grad()
    def mask_probabilities(self, raw: MaskRCNNOutput, detections: list[Detections],
                           sizes: list[tuple[int, int]]) -> list[Tensor]:
        """Each detection's mask probability for its class, pasted into its box on an (h, w) canvas.

        torchvision's `paste_masks_in_image`: the 28x28 mask, padded by one pixel, is resized bilinearly to
        the box (integer pixels) and placed in a zero image.

        Shape:
            - Output: B tensors (N_i, h_i, w_i) float in [0, 1], for `sizes[i] = (h_i, w_i)`.
        """
        boxes = [d.boxes for d in detections]
        dtype = self.roi_heads.mask_predictor.mask_fcn_logits.weight.dtype
        features = OrderedDict((name, f.to(dtype)) for name, f in raw.features.items())
        logits = self._mask_logits(features, boxes, [raw.detection.image_size] * len(boxes))   # (D, K + 1, M, M)
        probabilities = maskrcnn_inference(logits.float(), [d.labels + 1 for d in detections])  # B x (N_i, 1, M, M)
        return [paste_masks_in_image(p, b, size, padding=1)[:, 0] for p, b, size in zip(probabilities, boxes, sizes)]

    def _mask_logits(self, features: dict[str, Tensor], boxes: list[Tensor],
                     image_sizes: list[tuple[int, int]]) -> Tensor:
        pooled = self.roi_heads.mask_roi_pool(features, boxes, image_sizes)    # (R, C, 14, 14)
        return self.roi_heads.mask_predictor(self.roi_heads.mask_head(pooled))  # (R, K + 1, 28, 28)


def check_masks(images: Tensor, targets: list[Target] | None) -> None:
    """Raise a ValueError naming the target when its "masks" are missing or not (N, H, W) binary integers.

    Call after `check_inputs`, which checks the boxes and labels the masks are counted against.
    """
    if targets is None:
        return
    height, width = images.shape[-2:]
    for index, target in enumerate(targets):
        if "masks" not in target:
            raise ValueError(f"target {index} needs 'masks' (N, H, W) uint8 for Mask R-CNN, has {sorted(target)}")
        masks, count = target["masks"], len(target["boxes"])
        if masks.shape != (count, height, width):
            raise ValueError(f"target {index}: masks must be (N, H, W) = ({count}, {height}, {width}), one per box "
                             f"over the whole input, got {tuple(masks.shape)}")
        if masks.dtype not in (torch.uint8, torch.bool):
            raise ValueError(f"target {index}: masks must be uint8 or bool, got {masks.dtype}")
    # One device sync for the batch: palette or 0/255 masks would make targets above 1.
    coded = [(i, t["masks"]) for i, t in enumerate(targets) if t["masks"].dtype == torch.uint8 and t["masks"].numel()]
    if not coded:
        return
    for (index, _), peak in zip(coded, torch.stack([m.max() for _, m in coded]).tolist()):
        if peak > 1:
            raise ValueError(f"target {index}: masks must be 0 or 1, got values up to {peak}")


def positive_mask_targets(matcher: Any, boxes: list[Tensor], labels: Tensor, targets: list[Target],
                          resolution: int) -> tuple[list[Tensor], Tensor, Tensor]:
    """The positive sampled proposals, their classes and their ground-truth masks resampled on them.

    A positive proposal's ground truth is the one the RoI sampler matched it to: `matcher` (the RoI heads'
    `proposal_matcher`) on the same IoUs gives the same argmax, so it is recomputed here. Targets are torchvision's
    `project_masks_on_boxes`: RoIAlign of the binary mask over the proposal, `resolution` x `resolution`.

    Shape:
        - boxes: B tensors (S_i, 4) xyxy sampled proposals; labels: (sum S_i,) int64, 0 = background.
        - targets: B dicts with "boxes" (N_i, 4) and "masks" (N_i, H, W).
        - Output: B tensors (P_i, 4); (sum P_i,) int64 in [1, K]; (sum P_i, resolution, resolution) float.
    """
    positive_boxes, positive_labels, mask_targets = [], [], []
    for image_boxes, image_labels, target in zip(boxes, labels.split([len(b) for b in boxes]), targets):
        positive = torch.where(image_labels > 0)[0]
        chosen = image_boxes[positive]                                        # (P_i, 4)
        positive_boxes.append(chosen)
        positive_labels.append(image_labels[positive])
        if len(chosen) == 0:
            mask_targets.append(chosen.new_zeros((0, resolution, resolution)))
            continue
        matched = matcher(box_iou(target["boxes"].to(chosen.dtype), chosen))   # (P_i,) ground-truth index
        mask_targets.append(project_masks_on_boxes(target["masks"], chosen, matched, resolution))
    return positive_boxes, torch.cat(positive_labels), torch.cat(mask_targets)


def mask_loss(logits: Tensor | None, labels: Tensor | None, targets: Tensor | None) -> Tensor:
    """Mean binary cross-entropy of each RoI's mask logits for its class against its target (torchvision's
    `maskrcnn_loss`), in float32; 0 (connected to `logits`) when there are no RoIs.

    Shape:
        - logits: (P, K + 1, M, M); labels: (P,) int64 in [1, K]; targets: (P, M, M) in [0, 1].
    """
    if logits is None or labels is None or targets is None:
        raise ValueError("loss needs the output of forward(images, targets): this output was computed "
                         "without targets, so no mask targets were made")
    if targets.numel() == 0:
        return logits.float().sum() * 0
    chosen = logits[torch.arange(len(labels), device=labels.device), labels]   # (P, M, M)
    return F.binary_cross_entropy_with_logits(chosen.float(), targets.float())
