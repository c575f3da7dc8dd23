"""ResNet-20/32/44/56/110 for 32 px images: He, Zhang, Ren and Sun, "Deep Residual Learning for Image
Recognition" (CVPR 2016, arXiv:1512.03385), section 4.2, the CIFAR-10 networks.

A 3x3 convolution with 16 filters, then three stages of n basic blocks on 32x32, 16x16 and 8x8 maps with
16, 32 and 64 filters (6n + 2 weighted layers), global average pooling and a fully connected layer.
Shortcuts are option A, identity with stride-2 subsampling and zero-padded channels where the shape
changes, so they add no parameters: ResNet-20 has 0.27M parameters, ResNet-110 1.7M, as in the paper.
"""
from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock

from ninshiki.registry import register
from ninshiki.structures import FeatureInfo

_PAPER = "He et al., Deep Residual Learning for Image Recognition, CVPR 2016 (section 4.2, CIFAR-10)"


class ShortcutA(nn.Module):
    """Parameter-free shortcut (option A): keep every `stride`-th pixel and append zero channels.

    Shape:
        - Input: (B, C, H, W).
        - Output: (B, C + extra_channels, ceil(H / stride), ceil(W / stride)), the shape of the residual
          branch, whose first 3x3 convolution has padding 1 and the same stride.
    """

    def __init__(self, *, stride: int, extra_channels: int) -> None:
        super().__init__()
        self.stride, self.extra_channels = stride, extra_channels

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))  # pads dims from the last: W, H, then C

    def extra_repr(self) -> str:
        return f"stride={self.stride}, extra_channels={self.extra_channels}"


class CifarResNet(nn.Module):
    """The paper's CIFAR ResNet of depth 6n + 2. Features are layer1..layer3 at strides 1, 2, 4.

    Shape:
        - Input: (B, in_channels, H, W), H and W at least 4.
        - Output: (B, num_classes) logits.
    """

    classifier_names: tuple[str, ...] = ("fc",)
    first_conv: str = "conv1"
    feature_info: list[FeatureInfo]

    def __init__(self, *, depth: int, num_classes: int = 1000, in_channels: int = 3) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6n + 2 with n >= 1 (20, 32, 44, 56, 110, ...); got {depth}")
        blocks = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = _stage(16, 16, blocks, stride=1)
        self.layer2 = _stage(16, 32, blocks, stride=2)
        self.layer3 = _stage(32, 64, blocks, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        self.feature_info = [FeatureInfo(16, 1, "layer1"), FeatureInfo(32, 2, "layer2"), FeatureInfo(64, 4, "layer3")]
        for m in self.modules():  # "we initialize the weights as in [13]" (He et al., 2015)
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: Tensor) -> list[Tensor]:
        x = self.relu(self.bn1(self.conv1(x)))              # (B, 16, H, W)
        c1 = self.layer1(x)                                 # (B, 16, H, W)
        c2 = self.layer2(c1)                                # (B, 32, H/2, W/2)
        c3 = self.layer3(c2)                                # (B, 64, H/4, W/4)
        return [c1, c2, c3]

    def forward(self, x: Tensor) -> Tensor:
        x = self.avgpool(self.forward_features(x)[-1]).flatten(1)  # (B, 64)
        return self.fc(x)


def _stage(in_channels: int, out_channels: int, blocks: int, *, stride: int) -> nn.Sequential:
    shortcut = None
    if stride != 1 or in_channels != out_channels:
        shortcut = ShortcutA(stride=stride, extra_channels=out_channels - in_channels)
    layers = [BasicBlock(in_channels, out_channels, stride=stride, downsample=shortcut)]
    layers += [BasicBlock(out_channels, out_channels) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


@register(task="classify", test_input=(3, 32, 32), paper=_PAPER, torchvision=None)
def resnet20(*, num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> CifarResNet:
    """ResNet-20 for CIFAR (n = 3; 0.27M parameters with 10 classes)."""
    return CifarResNet(depth=20, num_classes=num_classes, in_channels=in_channels, **kwargs)


@register(task="classify", test_input=(3, 32, 32), paper=_PAPER, torchvision=None)
def resnet32(*, num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> CifarResNet:
    """ResNet-32 for CIFAR (n = 5; 0.46M parameters with 10 classes)."""
    return CifarResNet(depth=32, num_classes=num_classes, in_channels=in_channels, **kwargs)


@register(task="classify", test_input=(3, 32, 32), paper=_PAPER, torchvision=None)
def resnet44(*, num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> CifarResNet:
    """ResNet-44 for CIFAR (n = 7; 0.66M parameters with 10 classes)."""
    return CifarResNet(depth=44, num_classes=num_classes, in_channels=in_channels, **kwargs)


@register(task="classify", test_input=(3, 32, 32), paper=_PAPER, torchvision=None)
def resnet56(*, num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> CifarResNet:
    """ResNet-56 for CIFAR (n = 9; 0.85M parameters with 10 classes)."""
    return CifarResNet(depth=56, num_classes=num_classes, in_channels=in_channels, **kwargs)


@register(task="classify", test_input=(3, 32, 32), paper=_PAPER, torchvision=None)
def resnet110(*, num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> CifarResNet:
    """ResNet-110 for CIFAR (n = 18; 1.7M parameters with 10 classes)."""
    return CifarResNet(depth=110, num_classes=num_classes, in_channels=in_channels, **kwargs)
