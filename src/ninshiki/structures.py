"""Typed values that cross module boundaries."""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor


@dataclass(frozen=True)
class FeatureInfo:
    """One feature map a backbone exposes to heads."""
    channels: int     # channels of this feature map
    stride: int       # input pixels per feature-map pixel
    name: str         # module path that produces it, e.g. "layer3"


class ClassifierOutput(NamedTuple):
    """Raw output of classifiers with auxiliary heads (GoogLeNet), the same type in train and eval.

    Plain classifiers return their logits tensor directly; `split_logits` accepts both.
    """
    logits: Tensor                       # (B, K)
    aux_logits: tuple[Tensor, ...] = ()  # (B, K) each; computed in training mode only


def split_logits(raw: Tensor | ClassifierOutput) -> tuple[Tensor, tuple[Tensor, ...]]:
    """(main logits, auxiliary logits) of any classifier's raw output."""
    if isinstance(raw, ClassifierOutput):
        return raw.logits, raw.aux_logits
    return raw, ()


@dataclass
class Detections:
    """Detected objects in one image: the typed result of every detector's `postprocess`.

    Boxes are `xyxy` in pixels of the image they were predicted on (x1, y1 inclusive corner, x2, y2 the
    exclusive one, as torchvision and COCO-after-conversion use them). `labels` index the dataset's class
    list (0-based, contiguous); `scores` are in [0, 1], highest first. Instance segmenters (Mask R-CNN) also
    fill `masks`: one bool mask per object over the whole image (None for box-only detectors).
    """
    boxes: Tensor    # (N, 4) float, xyxy
    scores: Tensor   # (N,) float
    labels: Tensor   # (N,) int64
    masks: Tensor | None = None   # (N, H, W) bool, in the same pixels as the boxes

    def __post_init__(self) -> None:
        n = self.boxes.shape[0]
        if self.boxes.shape != (n, 4) or self.scores.shape != (n,) or self.labels.shape != (n,):
            raise ValueError(f"Detections: boxes {tuple(self.boxes.shape)}, scores {tuple(self.scores.shape)} "
                             f"and labels {tuple(self.labels.shape)} do not describe the same N objects")
        if self.masks is not None and (self.masks.dim() != 3 or self.masks.shape[0] != n):
            raise ValueError(f"Detections: masks {tuple(self.masks.shape)} are not (N, H, W) for N = {n} objects")

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def to(self, device: str | torch.device) -> Detections:
        masks = self.masks.to(device) if self.masks is not None else None
        return Detections(self.boxes.to(device), self.scores.to(device), self.labels.to(device), masks)

    def __getitem__(self, index: Tensor | slice) -> Detections:
        """The detections selected by a boolean mask, index tensor or slice."""
        masks = self.masks[index] if self.masks is not None else None
        return Detections(self.boxes[index], self.scores[index], self.labels[index], masks)

    @staticmethod
    def empty(device: str | torch.device = "cpu") -> Detections:
        return Detections(torch.zeros(0, 4, device=device), torch.zeros(0, device=device),
                          torch.zeros(0, dtype=torch.int64, device=device))


class SegmentationOutput(NamedTuple):
    """Raw output of every semantic segmenter, the same type in training and evaluation mode.

    Logits are at the input's resolution (the models upsample inside), so a loss and an argmax need no
    knowledge of the network's strides.
    """
    logits: Tensor                       # (B, K, H, W) class scores per input pixel, background included
    aux_logits: tuple[Tensor, ...] = ()  # (B, K, H, W) each; auxiliary heads (PSPNet), training mode only
