"""A small GoogLeNet for 32 px images, after Szegedy et al., "Going Deeper with Convolutions" (CVPR 2015,
arXiv:1409.4842).

A 3x3 stem and five Inception modules (torchvision's, so the third branch is 3x3 as in `googlenet`) at
about half GoogLeNet's widths, with one auxiliary classifier on inception4a. The raw output is a
`ClassifierOutput`, as for `googlenet`.
"""
from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.googlenet import BasicConv2d, Inception

from ninshiki.registry import register
from ninshiki.structures import ClassifierOutput, FeatureInfo

_PAPER = "Szegedy et al., Going Deeper with Convolutions, CVPR 2015"


class SmallAux(nn.Module):
    """Auxiliary classifier shaped like GoogLeNet's, narrowed: 4x4 pool, 1x1 conv to 64, fc 256, dropout, fc.

    Shape:
        - Input: (B, in_channels, H, W).
        - Output: (B, num_classes) logits.
    """

    def __init__(self, in_channels: int, num_classes: int, *, dropout: float = 0.7) -> None:
        super().__init__()
        self.conv = BasicConv2d(in_channels, 64, kernel_size=1)
        self.fc1 = nn.Linear(64 * 4 * 4, 256)
        self.fc2 = nn.Linear(256, num_classes)
        self.dropout = nn.Dropout(p=dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(F.adaptive_avg_pool2d(x, (4, 4))).flatten(1)  # (B, 1024)
        return self.fc2(self.dropout(F.relu(self.fc1(x), inplace=True)))


class GoogLeNetSmall(nn.Module):
    """Stem, inception3a-b, inception4a-b, inception5a; features at strides 2, 4, 8.

    Shape:
        - Input: (B, in_channels, H, W), H and W at least 8.
        - Output: `ClassifierOutput` with logits (B, K) and aux_logits (aux1,) in training mode, () in eval.
    """

    first_conv: str = "conv1.conv"
    classifier_names: tuple[str, ...]
    feature_info: list[FeatureInfo]

    def __init__(self, *, num_classes: int = 1000, in_channels: int = 3, aux_logits: bool = True,
                 dropout: float = 0.2, dropout_aux: float = 0.7) -> None:
        super().__init__()
        self.conv1 = BasicConv2d(in_channels, 64, kernel_size=3, padding=1)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        # Inception(in, 1x1, 3x3 reduce, 3x3, "5x5" reduce, "5x5", pool proj); outputs 128, 240, 256, 256, 416.
        self.inception3a = Inception(64, 32, 48, 64, 8, 16, 16)
        self.inception3b = Inception(128, 64, 64, 96, 16, 48, 32)
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = Inception(240, 96, 48, 104, 8, 24, 32)
        self.inception4b = Inception(256, 80, 56, 112, 12, 32, 32)
        self.maxpool4 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception5a = Inception(256, 128, 80, 160, 16, 64, 64)
        self.aux1 = SmallAux(256, num_classes, dropout=dropout_aux) if aux_logits else None
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(416, num_classes)
        self.classifier_names = ("fc", "aux1.fc2") if aux_logits else ("fc",)
        self.feature_info = [FeatureInfo(240, 2, "inception3b"), FeatureInfo(256, 4, "inception4b"),
                             FeatureInfo(416, 8, "inception5a")]
        for m in self.modules():  # torchvision's GoogLeNet init
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)

    def forward_features(self, x: Tensor) -> list[Tensor]:
        return self._run(x, with_aux=False)[0]

    def forward(self, x: Tensor) -> ClassifierOutput:
        features, aux = self._run(x, with_aux=self.training)
        x = self.avgpool(features[-1]).flatten(1)           # (B, 416)
        return ClassifierOutput(self.fc(self.dropout(x)), aux)

    def _run(self, x: Tensor, *, with_aux: bool) -> tuple[list[Tensor], tuple[Tensor, ...]]:
        x = self.maxpool1(self.conv1(x))
        c3 = self.inception3b(self.inception3a(x))          # (B, 240, H/2, W/2)
        x = self.inception4a(self.maxpool3(c3))
        aux = (self.aux1(x),) if with_aux and self.aux1 is not None else ()
        c4 = self.inception4b(x)                            # (B, 256, H/4, W/4)
        c5 = self.inception5a(self.maxpool4(c4))            # (B, 416, H/8, W/8)
        return [c3, c4, c5], aux


@register(task="classify", test_input=(3, 32, 32), paper=_PAPER, torchvision=None)
def googlenet_small(*, num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> GoogLeNetSmall:
    """Small GoogLeNet for 32 px images. kwargs: `aux_logits`, `dropout`, `dropout_aux`."""
    return GoogLeNetSmall(num_classes=num_classes, in_channels=in_channels, **kwargs)
