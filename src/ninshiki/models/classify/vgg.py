"""VGG: Simonyan and Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition"
(ICLR 2015, arXiv:1409.1556).

`vgg11`..`vgg19` are the paper's configurations A, B, D and E as built by torchvision, so torchvision's
weights load unchanged; the `_bn` variants add batch normalisation after every convolution (not in the
paper; torchvision's). `vgg_small` is a narrow VGG for 28-64 px images.
"""
from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from torchvision import models as tvm
from torchvision.models.vgg import cfgs, make_layers

from ninshiki.models.layers import conv_like, pool_feature_info, run_with_taps
from ninshiki.registry import register
from ninshiki.structures import FeatureInfo

_PAPER = "Simonyan and Zisserman, Very Deep Convolutional Networks for Large-Scale Image Recognition, ICLR 2015"


class VGG(tvm.VGG):
    """torchvision's VGG with the backbone contract; parameter names are torchvision's.

    Features are the five max-pool outputs (strides 2, 4, 8, 16, 32), what FCN and SegNet read.

    Shape:
        - Input: (B, in_channels, H, W), H and W at least 32.
        - Output: (B, num_classes) logits.
    """

    classifier_names: tuple[str, ...] = ("classifier.6",)
    first_conv: str = "features.0"
    feature_info: list[FeatureInfo]

    def __init__(self, *, config: str, batch_norm: bool, num_classes: int = 1000, in_channels: int = 3,
                 dropout: float = 0.5) -> None:
        super().__init__(make_layers(cfgs[config], batch_norm=batch_norm), num_classes=num_classes, dropout=dropout)
        if in_channels != 3:
            conv = conv_like(self.features[0], in_channels=in_channels)
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")  # torchvision's VGG init
            nn.init.zeros_(conv.bias)
            self.features[0] = conv
        self.feature_info = pool_feature_info(self.features, "features")
        self._taps = frozenset(int(info.name.rsplit(".", 1)[1]) for info in self.feature_info)

    def forward_features(self, x: Tensor) -> list[Tensor]:
        return run_with_taps(self.features, x, self._taps)


class VGGSmall(nn.Module):
    """A narrow VGG for small images: three stages of two 3x3 conv -> BN -> ReLU layers.

    Stages have `width`, 2 * `width` and 4 * `width` channels, with a 2x2 max-pool after the first two,
    then global average pooling, dropout and one linear layer. About 0.29M parameters at width 32, and fast
    on a CPU for 28x28 inputs. Features are the three stage outputs (before pooling) at strides 1, 2, 4.

    Shape:
        - Input: (B, in_channels, H, W), H and W at least 4.
        - Output: (B, num_classes) logits.
    """

    classifier_names: tuple[str, ...] = ("fc",)
    first_conv: str = "stage1.0"
    feature_info: list[FeatureInfo]

    def __init__(self, *, num_classes: int = 1000, in_channels: int = 3, width: int = 32,
                 dropout: float = 0.2) -> None:
        super().__init__()
        self.stage1 = _conv_bn_relu_pair(in_channels, width)
        self.pool1 = nn.MaxPool2d(2)
        self.stage2 = _conv_bn_relu_pair(width, 2 * width)
        self.pool2 = nn.MaxPool2d(2)
        self.stage3 = _conv_bn_relu_pair(2 * width, 4 * width)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(4 * width, num_classes)
        self.feature_info = [FeatureInfo(width, 1, "stage1"), FeatureInfo(2 * width, 2, "stage2"),
                             FeatureInfo(4 * width, 4, "stage3")]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: Tensor) -> list[Tensor]:
        c1 = self.stage1(x)                                 # (B, w, H, W)
        c2 = self.stage2(self.pool1(c1))                    # (B, 2w, H/2, W/2)
        c3 = self.stage3(self.pool2(c2))                    # (B, 4w, H/4, W/4)
        return [c1, c2, c3]

    def forward(self, x: Tensor) -> Tensor:
        x = self.avgpool(self.forward_features(x)[-1]).flatten(1)  # (B, 4w)
        return self.fc(self.dropout(x))


def _conv_bn_relu_pair(in_channels: int, out_channels: int) -> nn.Sequential:
    # No conv bias: the BN that follows has its own shift.
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def _vgg(config: str, batch_norm: bool, num_classes: int, in_channels: int, kwargs: dict[str, Any]) -> VGG:
    return VGG(config=config, batch_norm=batch_norm, num_classes=num_classes, in_channels=in_channels, **kwargs)


@register(task="classify", test_input=(3, 32, 32), paper=_PAPER, torchvision="vgg11")
def vgg11(*, num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> VGG:
    """VGG-11, configuration A (133M parameters). kwargs: `dropout`."""
    return _vgg("A", False, num_classes, in_channels, kwargs)


@register(task="classify", test_input=(3, 32, 32), paper=_PAPER, torchvision="vgg13")
def vgg13(*, num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> VGG:
    """VGG-13, configuration B (133M parameters). kwargs: `dropout`."""
    return _vgg("B", False, num_classes, in_channels, kwargs)


@register(task="classify", test_input=(3, 32, 32), paper=_PAPER, torchvision="vgg16")
def vgg16(*, num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> VGG:
    """VGG-16, configuration D (138M parameters). kwargs: `dropout`."""
    return _vgg("D", False, num_classes, in_channels, kwargs)


@register(task="classify", test_input=(3, 32, 32), paper=_PAPER, torchvision="vgg19")
def vgg19(*, num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> VGG:
    """VGG-19, configuration E (144M parameters). kwargs: `dropout`."""
    return _vgg("E", False, num_classes, in_channels, kwargs)


@register(task="classify", test_input=(3, 32, 32), paper=_PAPER, torchvision="vgg11_bn")
def vgg11_bn(*, num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> VGG:
    """VGG-11 with batch normalisation. kwargs: `dropout`."""
    return _vgg("A", True, num_classes, in_channels, kwargs)


@register(task="classify", test_input=(3, 32, 32), paper=_PAPER, torchvision="vgg13_bn")
def vgg13_bn(*, num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> VGG:
    """VGG-13 with batch normalisation. kwargs: `dropout`."""
    return _vgg("B", True, num_classes, in_channels, kwargs)


@register(task="classify", test_input=(3, 32, 32), paper=_PAPER, torchvision="vgg16_bn")
def vgg16_bn(*, num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> VGG:
    """VGG-16 with batch normalisation. kwargs: `dropout`."""
    return _vgg("D", True, num_classes, in_channels, kwargs)


@register(task="classify", test_input=(3, 32, 32), paper=_PAPER, torchvision="vgg19_bn")
def vgg19_bn(*, num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> VGG:
    """VGG-19 with batch normalisation. kwargs: `dropout`."""
    return _vgg("E", True, num_classes, in_channels, kwargs)


@register(task="classify", test_input=(1, 28, 28), paper=_PAPER, torchvision=None)
def vgg_small(*, num_classes: int = 1000, in_channels: int = 3, width: int = 32, dropout: float = 0.2) -> VGGSmall:
    """Narrow VGG for 28-64 px images (the Fashion-MNIST recipe model)."""
    return VGGSmall(num_classes=num_classes, in_channels=in_channels, width=width, dropout=dropout)
