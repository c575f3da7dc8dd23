"""Pieces every detector shares: input normalisation and the score-filter / NMS / top-k selection."""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.ops import batched_nms, clip_boxes_to_image

from ninshiki.structures import Detections

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageNormalizer(nn.Module):
    """(x - mean) / std per channel, for RGB images in [0, 1]; the buffers travel with the model."""

    def __init__(self, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        return (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)


def imagenet_normalizer(in_channels: int = 3) -> ImageNormalizer:
    """ImageNet's statistics for RGB input; their average on every channel otherwise (gray, multispectral)."""
    if in_channels == 3:
        return ImageNormalizer(IMAGENET_MEAN, IMAGENET_STD)
    return ImageNormalizer((sum(IMAGENET_MEAN) / 3,) * in_channels, (sum(IMAGENET_STD) / 3,) * in_channels)


def select_detections(boxes: Tensor, scores: Tensor, *, score_threshold: float, nms_iou: float,
                      max_detections: int, size: tuple[int, int]) -> Detections:
    """Per-class detections of one image from candidate boxes and their class scores.

    Every (box, class) pair whose score exceeds `score_threshold` is a candidate; candidates go through
    NMS per class at `nms_iou`, and the `max_detections` best are kept, highest score first.

    Shape:
        - boxes: (M, 4) xyxy in input pixels, one box shared by all classes, or (M, K, 4) one per class.
        - scores: (M, K) probabilities.
        - size: (height, width) the boxes are clipped to.
    """
    keep = scores > score_threshold                                    # (M, K)
    box_index, labels = keep.nonzero(as_tuple=True)
    chosen = boxes[box_index] if boxes.dim() == 2 else boxes[box_index, labels]   # (P, 4)
    chosen = clip_boxes_to_image(chosen.float(), size)
    chosen_scores = scores[box_index, labels].float()
    if chosen_scores.numel() > 0:
        kept = batched_nms(chosen, chosen_scores, labels, nms_iou)[:max_detections]
        chosen, chosen_scores, labels = chosen[kept], chosen_scores[kept], labels[kept]
    return Detections(chosen, chosen_scores, labels.to(torch.int64))
