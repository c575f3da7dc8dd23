"""What every semantic segmenter shares: the loss, the postprocessing and the upsampling to input size.

Subclasses of `SemanticSegmenter` implement `forward(images, targets=None) -> SegmentationOutput` only.
The loss is per-pixel cross-entropy over the labelled pixels (`ignore_index` excluded: VOC's 255 borders),
averaged over them, plus `aux_weight` times the same loss of each auxiliary head (PSPNet: 0.4).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ninshiki.structures import SegmentationOutput

IGNORE_INDEX = 255   # VOC's void label; masks use it for unlabelled pixels


def upsample_to(logits: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    """Bilinear upsampling of class scores to `size` (align_corners=False, as torchvision's segmenters).

    Shape:
        - logits: (B, K, h, w). Output: (B, K, *size).
    """
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)


def segmentation_loss(raw: SegmentationOutput, targets: Tensor, *, ignore_index: int = IGNORE_INDEX,
                      aux_weight: float = 0.4) -> dict[str, Tensor]:
    """{"loss": ce + aux_weight * sum(aux ce), "ce": main cross-entropy, "aux": sum of auxiliary ones}.

    A batch without a single labelled pixel gives a zero loss that still reaches every logit (so the
    backward pass and DDP stay well defined), not NaN.

    Shape:
        - raw.logits: (B, K, H, W); targets: (B, H, W) int64 in [0, K) or `ignore_index`.
    """
    def ce(logits: Tensor) -> Tensor:
        if not (targets != ignore_index).any():
            return logits.sum() * 0.0
        return F.cross_entropy(logits.float(), targets, ignore_index=ignore_index)

    main = ce(raw.logits)
    aux = sum((ce(logits) for logits in raw.aux_logits), main.new_zeros(()))
    return {"loss": main + aux_weight * aux, "ce": main.detach(), "aux": aux.detach()}


def predict_classes(raw: SegmentationOutput, sizes: list[tuple[int, int]] | None = None) -> list[Tensor]:
    """The arg-max class of every pixel, cropped to each image's valid (top-left) region.

    Shape:
        - raw.logits: (B, K, H, W). Output: one (h_i, w_i) int64 map per image, `sizes[i] = (h_i, w_i)`.
    """
    labels = raw.logits.argmax(dim=1)   # (B, H, W)
    if sizes is None:
        return list(labels.unbind(0))
    return [labels[i, :h, :w] for i, (h, w) in enumerate(sizes)]


class SemanticSegmenter(nn.Module):
    """Base class of the semantic segmenters: `loss` and `postprocess` of the `Segmenter` contract.

    Args:
        num_classes: Classes K, background included.
        input_size: Side of the square training crops the model is meant for.
        ignore_index: Target value of unlabelled pixels.
        aux_weight: Weight of auxiliary heads' losses.
    """

    classifier_names: tuple[str, ...] = ()

    def __init__(self, *, num_classes: int, input_size: int, ignore_index: int = IGNORE_INDEX,
                 aux_weight: float = 0.4) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"a segmenter needs at least 2 classes (background and one more), got {num_classes}")
        self.num_classes = num_classes
        self.input_size = input_size
        self.ignore_index = ignore_index
        self.aux_weight = aux_weight

    def loss(self, raw: SegmentationOutput, targets: Tensor) -> dict[str, Tensor]:
        return segmentation_loss(raw, targets, ignore_index=self.ignore_index, aux_weight=self.aux_weight)

    def postprocess(self, raw: SegmentationOutput, sizes: list[tuple[int, int]] | None = None) -> list[Tensor]:
        return predict_classes(raw, sizes)
