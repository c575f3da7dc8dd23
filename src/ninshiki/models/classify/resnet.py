"""ResNet: He, Zhang, Ren and Sun, "Deep Residual Learning for Image Recognition" (CVPR 2016,
arXiv:1512.03385).

The ImageNet networks (18, 34, 50, 101 and 152 layers) as built by torchvision, so torchvision's weights
load unchanged. torchvision's bottleneck strides in its 3x3 convolution rather than the first 1x1 ("ResNet
v1.5"), and shortcuts that change shape are 1x1 projections (the paper's option B). The 32 px CIFAR
networks are in `resnet_cifar`.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn
from torchvision import models as tvm
from torchvision.models.resnet import BasicBlock, Bottleneck

from ninshiki.models.layers import conv_like
from ninshiki.registry import register
from ninshiki.structures import FeatureInfo

_PAPER = "He et al., Deep Residual Learning for Image Recognition, CVPR 2016"
_STAGES = ("layer1", "layer2", "layer3", "layer4")


class ResNet(tvm.ResNet):
    """torchvision's ResNet with the backbone contract; parameter names are torchvision's.

    Features are layer1..layer4, at strides 4, 8, 16 and 32 (a stage replaced by dilation keeps the
    previous stride, for dense prediction such as PSPNet).

    Args:
        block: `BasicBlock` (18, 34) or `Bottleneck` (50, 101, 152).
        layers: Blocks per stage.
        num_classes: Number of classes K.
        in_channels: Input channels; other than 3 replaces the first convolution.
        zero_init_residual: Start every residual branch at zero (Goyal et al., 2017).
        replace_stride_with_dilation: For layer2..layer4, dilate instead of striding (bottlenecks only).

    Shape:
        - Input: (B, in_channels, H, W), H and W at least 32.
        - Output: (B, num_classes) logits.
    """

    classifier_names: tuple[str, ...] = ("fc",)
    first_conv: str = "conv1"
    feature_info: list[FeatureInfo]

    def __init__(self, *, block: type[BasicBlock | Bottleneck], layers: Sequence[int], num_classes: int = 1000,
                 in_channels: int = 3, zero_init_residual: bool = False,
                 replace_stride_with_dilation: Sequence[bool] = (False, False, False)) -> None:
        super().__init__(block, list(layers), num_classes=num_classes, zero_init_residual=zero_init_residual,
                         replace_stride_with_dilation=list(replace_stride_with_dilation))
        if in_channels != 3:
            conv = conv_like(self.conv1, in_channels=in_channels)
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")  # torchvision's ResNet init
            self.conv1 = conv
        strides = [4]
        for dilate in replace_stride_with_dilation:
            strides.append(strides[-1] if dilate else 2 * strides[-1])
        self.feature_info = [FeatureInfo(width * block.expansion, stride, name)
                             for width, stride, name in zip((64, 128, 256, 512), strides, _STAGES)]

    def forward_features(self, x: Tensor) -> list[Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, 64, H/4, W/4)
        features = []
        for name in _STAGES:
            x = getattr(self, name)(x)
            features.append(x)
        return features


def _resnet(block: type[BasicBlock | Bottleneck], layers: Sequence[int], num_classes: int, in_channels: int,
            kwargs: dict[str, Any]) -> ResNet:
    return ResNet(block=block, layers=layers, num_classes=num_classes, in_channels=in_channels, **kwargs)


@register(task="classify", test_input=(3, 64, 64), paper=_PAPER, torchvision="resnet18")
def resnet18(*, num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> ResNet:
    """ResNet-18 (11.7M parameters). kwargs: `zero_init_residual`."""
    return _resnet(BasicBlock, (2, 2, 2, 2), num_classes, in_channels, kwargs)


@register(task="classify", test_input=(3, 64, 64), paper=_PAPER, torchvision="resnet34")
def resnet34(*, num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> ResNet:
    """ResNet-34 (21.8M parameters). kwargs: `zero_init_residual`."""
    return _resnet(BasicBlock, (3, 4, 6, 3), num_classes, in_channels, kwargs)


@register(task="classify", test_input=(3, 64, 64), paper=_PAPER, torchvision="resnet50")
def resnet50(*, num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> ResNet:
    """ResNet-50 (25.6M parameters). kwargs: `zero_init_residual`, `replace_stride_with_dilation`."""
    return _resnet(Bottleneck, (3, 4, 6, 3), num_classes, in_channels, kwargs)


@register(task="classify", test_input=(3, 64, 64), paper=_PAPER, torchvision="resnet101")
def resnet101(*, num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> ResNet:
    """ResNet-101 (44.5M parameters). kwargs: `zero_init_residual`, `replace_stride_with_dilation`."""
    return _resnet(Bottleneck, (3, 4, 23, 3), num_classes, in_channels, kwargs)


@register(task="classify", test_input=(3, 64, 64), paper=_PAPER, torchvision="resnet152")
def resnet152(*, num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> ResNet:
    """ResNet-152 (60.2M parameters). kwargs: `zero_init_residual`, `replace_stride_with_dilation`."""
    return _resnet(Bottleneck, (3, 8, 36, 3), num_classes, in_channels, kwargs)
