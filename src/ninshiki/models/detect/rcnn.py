"""R-CNN: Girshick, Donahue, Darrell and Malik, "Rich feature hierarchies for accurate object detection and
semantic segmentation", CVPR 2014.

Selective Search proposes about 2000 class-agnostic regions per image ("fast" mode); each region, dilated so that
the warped crop carries p pixels of image context (p = 16 at 227 px, scaled with `crop_size`), is warped to a
square and classified by a CNN into K object classes or background; class-specific box regression then moves
each region's box towards the object. Non-maximum suppression runs per class at IoU 0.3, the value of R-CNN's
released code (`rcnn_detect.m`); the paper calls it a learned threshold.

Training is the paper's fine-tuning: regions with IoU >= 0.5 to a ground-truth box are positives of its class,
all others background, the ground-truth boxes themselves among the positives. The paper's mini-batches hold 32
positive and 96 background windows (128) drawn from any images; here a batch of B images holds 16 B and 48 B,
the same 1:3 split.

Deviations, each for a reason:

- Scores are the fine-tuned network's softmax over K + 1 classes, not the per-class linear SVMs the paper
  trains afterwards on fc7 features with hard-negative mining. The paper's appendix finds the SVMs somewhat
  better on VOC 2007; the softmax keeps R-CNN one network trained by one loss, as in its successor Fast R-CNN.
- Box regression is a linear layer on the same features as the classifier, trained jointly with it by the L2
  loss on the paper's targets t = (dx, dy, log dw, log dh) for regions with IoU >= 0.6, instead of ridge
  regression (lambda = 1000) on pool5 features after fine-tuning; the optimiser's weight decay is the ridge
  penalty. The targets are scaled by (10, 10, 5, 5), torchvision's weights: R-CNN's code whitens its targets
  for the same reason, to give the four outputs comparable scales. `box_weights=(1, 1, 1, 1)` gives them raw.
- The default CNN is small and trained from scratch on 64 px crops (no ImageNet weights offline):
  `SmallBackbone`, global average pooling and one fully connected layer. `backbone="alexnet", crop_size=227`
  is the paper's network (its fc7 features), and `backbone_weights` loads ImageNet weights into it first.
- Crops are bilinear samples of the normalised image (`roi_align`), so the context beyond the image border is
  the mean colour, as in R-CNN's code, which pads the mean-subtracted crop with zeros.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from functools import partial
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ninshiki.classical.selective_search import selective_search
from ninshiki.models.contracts import Target
from ninshiki.models.detect.common import ImageNormalizer, select_detections
from ninshiki.models.detect.rcnn_encoders import crop_encoder
from ninshiki.models.detect.rcnn_regions import ProposalMemo, RegionSample, decode_boxes, sample_regions, warp_regions
from ninshiki.registry import register
from ninshiki.structures import Detections

_PAPER = ("Girshick, Donahue, Darrell and Malik, Rich feature hierarchies for accurate object detection and "
          "semantic segmentation, CVPR 2014")


@dataclasses.dataclass(frozen=True)
class RCNNConfig:
    """Every knob of `RCNN`; `rcnn(**kwargs)` takes these fields as keywords."""
    backbone: str = "small"               # "small" or a registered classifier with one classifier layer ("alexnet")
    backbone_weights: str | None = None   # weights file for the classifier backbone (ImageNet pre-training)
    crop_size: int = 64                   # warped crop side; the paper's 227 with AlexNet
    context_padding: int | None = None    # context pixels around the box in the crop; None: 16 * crop_size / 227
    hidden: int = 256                     # fully connected layer after the small backbone
    dropout: float = 0.5                  # after that layer, as AlexNet's fc6 and fc7
    search_mode: str = "fast"             # Selective Search configuration
    search_side: int = 500                # images are shrunk to this longer side for Selective Search (speed)
    min_proposal_size: int = 10           # proposals narrower or shorter than this (input pixels) are dropped
    train_proposals: int = 2000           # proposals per image the fine-tuning sampler draws from
    test_proposals: int = 300             # proposals per image scored for detection
    positives_per_image: int = 16         # the paper's 1:3 split: 32 and 96 per 128 windows
    negatives_per_image: int = 48
    positive_iou: float = 0.5             # fine-tuning positives
    regress_iou: float = 0.6              # box regression examples
    box_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)
    box_loss_weight: float = 1.0
    chunk_size: int = 256                 # crops through the CNN at once, to bound memory
    memo_size: int = 4096                 # images whose proposals are remembered
    input_size: int = 320
    score_threshold: float = 0.001
    nms_iou: float = 0.3
    max_detections: int = 100

    def __post_init__(self) -> None:
        object.__setattr__(self, "box_weights", tuple(float(w) for w in self.box_weights))
        padding = self.padding
        if len(self.box_weights) != 4 or min(self.box_weights) <= 0:
            raise ValueError(f"rcnn: box_weights must be 4 positive numbers, got {self.box_weights}")
        if self.crop_size < 8 or not 0 <= 2 * padding < self.crop_size:
            raise ValueError(f"rcnn: crop_size {self.crop_size} with context_padding {padding} leaves no box")
        counts = (self.train_proposals, self.test_proposals, self.positives_per_image, self.negatives_per_image,
                  self.chunk_size, self.hidden)
        if min(counts) < 1 or self.memo_size < 0:
            raise ValueError("rcnn: proposal, sample, chunk and hidden counts must be positive, memo_size >= 0")

    @property
    def padding(self) -> int:
        """Context padding in crop pixels: the paper's 16 at 227, scaled to `crop_size` unless given."""
        return round(16 * self.crop_size / 227) if self.context_padding is None else self.context_padding


class RCNNOutput(NamedTuple):
    """Raw output of `RCNN.forward`, one type in training and evaluation.

    The detection rows score every proposal (up to `test_proposals` per image); in training mode with targets,
    they are the sampled regions instead, and detections decoded from them are for monitoring only.
    """
    proposals: tuple[Tensor, ...]          # (P_i, 4) per image, xyxy input pixels: the regions of the rows below
    class_logits: Tensor                   # (P, K + 1), column 0 background
    box_deltas: Tensor                     # (P, 4K) class-specific encoded offsets
    image_size: tuple[int, int]            # (H, W) of the input batch
    sample: RegionSample | None = None     # the fine-tuning regions and their labels, when targets were given
    sample_logits: Tensor | None = None    # (S, K + 1)
    sample_deltas: Tensor | None = None    # (S, 4K)


class RCNN(nn.Module):
    """R-CNN behind the detector contract (`ninshiki.models.contracts.Detector`).

    Args:
        num_classes: Object classes K (background is added).
        in_channels: Image channels, 3 (RGB) or 1 (gray).
        config: See `RCNNConfig`.

    Shape:
        - images: (B, C, H, W) float in [0, 1]; targets: {"boxes": (N, 4) xyxy, "labels": (N,)} per image.
        - Output: `RCNNOutput`.
    """

    def __init__(self, *, num_classes: int, in_channels: int = 3, config: RCNNConfig | None = None) -> None:
        super().__init__()
        config = config or RCNNConfig()
        if num_classes < 1 or in_channels not in (1, 3):
            raise ValueError(f"rcnn: need num_classes >= 1 and in_channels 1 or 3, got {num_classes}, {in_channels}")
        self.config, self.num_classes, self.in_channels = config, num_classes, in_channels
        self.input_size, self.score_threshold = config.input_size, config.score_threshold
        self.nms_iou, self.max_detections = config.nms_iou, config.max_detections
        mean, std = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)) if in_channels == 3 else ((0.449,), (0.226,))
        self.normalizer = ImageNormalizer(mean, std)
        self.encoder, features = crop_encoder(config.backbone, in_channels=in_channels, hidden=config.hidden,
                                              dropout=config.dropout, weights=config.backbone_weights)
        self.cls_score = nn.Linear(features, num_classes + 1)
        self.bbox_pred = nn.Linear(features, 4 * num_classes)
        for layer, std_dev in ((self.cls_score, 0.01), (self.bbox_pred, 0.001)):   # Fast R-CNN's initialisation
            nn.init.normal_(layer.weight, std=std_dev)
            nn.init.zeros_(layer.bias)
        self.classifier_names = ("cls_score", "bbox_pred")
        self.first_conv = f"encoder.{self.encoder.first_conv}"
        self.proposal_memo = ProposalMemo(config.memo_size)   # not a buffer: never saved with the weights

    @torch.no_grad()
    def propose(self, images: Tensor) -> list[Tensor]:
        """Selective Search proposals of each image, memoised by pixel content.

        Shape:
            - images: (B, C, H, W) in [0, 1]. Output: one (P_i, 4) xyxy float tensor per image, on its device,
              ranked, P_i <= max(train_proposals, test_proposals).
        """
        cfg = self.config
        search = partial(selective_search, mode=cfg.search_mode, min_size=cfg.min_proposal_size,
                         max_side=cfg.search_side, max_proposals=max(cfg.train_proposals, cfg.test_proposals))
        pixels = (images.detach().float() * 255).round().clamp(0, 255).to(torch.uint8)
        pixels = pixels.permute(0, 2, 3, 1).cpu().numpy()                       # (B, H, W, C)
        return [torch.from_numpy(self.proposal_memo.get(np.ascontiguousarray(p), search)).to(images.device)
                for p in pixels]

    def forward(self, images: Tensor, targets: list[Target] | None = None, *,
                proposals: Sequence[Tensor | np.ndarray] | None = None) -> RCNNOutput:
        """Score the proposals of each image; with `targets`, also the fine-tuning sample.

        `proposals` (one (P_i, 4) xyxy box array per image, ranked) replace Selective Search when given.
        """
        self._check_inputs(images, targets)
        found = self.propose(images) if proposals is None else self._given(proposals, images)
        normalised = self.normalizer(images)
        size = (int(images.shape[2]), int(images.shape[3]))
        sample, sample_logits, sample_deltas = None, None, None
        if targets is not None:
            with torch.no_grad():
                sample = sample_regions([p[: self.config.train_proposals] for p in found], targets,
                                        positives=self.config.positives_per_image,
                                        negatives=self.config.negatives_per_image,
                                        positive_iou=self.config.positive_iou, regress_iou=self.config.regress_iou,
                                        weights=self.config.box_weights)
            sample_logits, sample_deltas = self._score(normalised, sample.boxes)
            if self.training:
                return RCNNOutput(sample.boxes, sample_logits, sample_deltas, size, sample, sample_logits,
                                  sample_deltas)
        boxes = tuple(p[: self.config.test_proposals] for p in found)
        logits, deltas = self._score(normalised, boxes)
        return RCNNOutput(boxes, logits, deltas, size, sample, sample_logits, sample_deltas)

    def loss(self, raw: RCNNOutput, targets: list[Target]) -> dict[str, Tensor]:
        """Cross-entropy over K + 1 classes plus the L2 box loss of the label's class, on the sampled regions."""
        if raw.sample is None or raw.sample_logits is None or raw.sample_deltas is None:
            raise ValueError("rcnn: loss needs the output of a forward pass that was given the targets")
        if len(targets) != len(raw.sample.boxes):
            raise ValueError(f"rcnn: {len(targets)} targets for a batch of {len(raw.sample.boxes)} images")
        labels, regress = raw.sample.labels, raw.sample.regress
        if len(labels) == 0:   # no proposals and no objects anywhere in the batch
            zero = raw.sample_logits.sum() * 0 + self.cls_score.weight.sum() * 0
            return {"loss": zero, "loss_cls": zero.detach(), "loss_box": zero.detach()}
        loss_cls = F.cross_entropy(raw.sample_logits.float(), labels)
        rows = regress.nonzero().flatten()
        deltas = raw.sample_deltas.float().view(len(labels), self.num_classes, 4)[rows, labels[rows] - 1]  # (M, 4)
        loss_box = (deltas - raw.sample.box_targets[rows]).pow(2).sum() / max(len(rows), 1)
        total = loss_cls + self.config.box_loss_weight * loss_box
        return {"loss": total, "loss_cls": loss_cls.detach(), "loss_box": loss_box.detach()}

    @torch.no_grad()
    def postprocess(self, raw: RCNNOutput, sizes: list[tuple[int, int]] | None = None) -> list[Detections]:
        """Softmax scores, class-specific boxes, then per-class NMS and top-k of each image.

        Boxes are xyxy in input pixels, clipped to `sizes[i] = (height, width)` (default: the input's size).
        """
        count = len(raw.proposals)
        sizes = sizes if sizes is not None else [raw.image_size] * count
        if len(sizes) != count:
            raise ValueError(f"rcnn: {len(sizes)} sizes for a batch of {count} images")
        scores = F.softmax(raw.class_logits.float(), dim=1)[:, 1:]              # (P, K)
        deltas = raw.box_deltas.float().view(-1, self.num_classes, 4)           # (P, K, 4)
        boxes = decode_boxes(deltas, torch.cat(raw.proposals).float(), self.config.box_weights)   # (P, K, 4)
        counts = [len(p) for p in raw.proposals]
        return [select_detections(b, s, score_threshold=self.score_threshold, nms_iou=self.nms_iou,
                                  max_detections=self.max_detections, size=size)
                for b, s, size in zip(boxes.split(counts), scores.split(counts), sizes)]

    def _score(self, normalised: Tensor, boxes: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """Class logits (R, K + 1) and box deltas (R, 4K) of every region, warped and classified in chunks."""
        rois = torch.cat([torch.cat([b.new_full((len(b), 1), float(i)), b.float()], dim=1)
                          for i, b in enumerate(boxes)])                          # (R, 5)
        logits, deltas = [], []
        for chunk in rois.split(self.config.chunk_size):
            crops = warp_regions(normalised, chunk, crop_size=self.config.crop_size, padding=self.config.padding)
            features = self.encoder(crops)                                        # (r, D)
            logits.append(self.cls_score(features))
            deltas.append(self.bbox_pred(features))
        if not logits:
            return normalised.new_zeros(0, self.num_classes + 1), normalised.new_zeros(0, 4 * self.num_classes)
        return torch.cat(logits), torch.cat(deltas)

    def _given(self, proposals: Sequence[Tensor | np.ndarray], images: Tensor) -> list[Tensor]:
        if len(proposals) != len(images):
            raise ValueError(f"rcnn: {len(proposals)} proposal sets for a batch of {len(images)} images")
        out = [torch.as_tensor(p, dtype=torch.float32, device=images.device) for p in proposals]
        for index, boxes in enumerate(out):
            if boxes.dim() != 2 or boxes.shape[1] != 4:
                raise ValueError(f"rcnn: proposals[{index}] must be (P, 4) xyxy, got {tuple(boxes.shape)}")
        return out

    def _check_inputs(self, images: Tensor, targets: list[Target] | None) -> None:
        if images.dim() != 4 or images.shape[1] != self.in_channels or images.shape[0] == 0:
            raise ValueError(f"rcnn: images must be (B, {self.in_channels}, H, W) with B >= 1, "
                             f"got {tuple(images.shape)}")
        if targets is None:
            return
        if len(targets) != len(images):
            raise ValueError(f"rcnn: {len(targets)} targets for a batch of {len(images)} images")
        for index, target in enumerate(targets):
            boxes, labels = target.get("boxes"), target.get("labels")
            if boxes is None or labels is None or boxes.dim() != 2 or boxes.shape[1] != 4 \
                    or labels.shape != (boxes.shape[0],):
                raise ValueError(f"rcnn: targets[{index}] needs 'boxes' (N, 4) and 'labels' (N,)")
            if len(labels) and (labels.min() < 0 or labels.max() >= self.num_classes):
                raise ValueError(f"rcnn: targets[{index}] has labels outside [0, {self.num_classes})")


@register(task="detect", test_input=(3, 128, 128), paper=_PAPER)
def rcnn(*, num_classes: int, in_channels: int = 3, **kwargs: Any) -> RCNN:
    """R-CNN: Selective Search, warped crops, a CNN classifier and box regression. kwargs: `RCNNConfig` fields."""
    known = {f.name for f in dataclasses.fields(RCNNConfig)}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise TypeError(f"rcnn: unknown option(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    return RCNN(num_classes=num_classes, in_channels=in_channels, config=RCNNConfig(**kwargs))
