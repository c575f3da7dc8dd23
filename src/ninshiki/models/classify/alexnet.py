"""AlexNet: Krizhevsky, Sutskever and Hinton, "ImageNet Classification with Deep Convolutional Neural
Networks" (NeurIPS 2012).

`alexnet` is torchvision's network, the single-tower variant of "One weird trick for parallelizing
convolutional neural networks" (Krizhevsky, arXiv:1404.5997): 64-192-384-256-256 filters and no local
response normalisation, so torchvision's weights load unchanged. `alexnet_small` keeps the shape (five
convolutions, three overlapping max-pools, three fully connected layers with dropout) scaled for 32 px images.
"""
from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from torchvision import models as tvm

from ninshiki.models.layers import conv_like, pool_feature_info, run_with_taps
from ninshiki.registry import register
from ninshiki.structures import FeatureInfo

_PAPER = "Krizhevsky et al., ImageNet Classification with Deep Convolutional Neural Networks, NeurIPS 2012"


class AlexNet(tvm.AlexNet):
    """torchvision's AlexNet with the backbone contract; parameter names are torchvision's.

    Features are the three max-pool outputs (strides 8, 16, 32). The pools are unpadded 3x3/2, so a map can
    be one pixel smaller than input / stride.

    Shape:
        - Input: (B, in_channels, H, W), H and W at least 63.
        - Output: (B, num_classes) logits.
    """

    classifier_names: tuple[str, ...] = ("classifier.6",)
    first_conv: str = "features.0"
    feature_info: list[FeatureInfo]

    def __init__(self, *, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.5) -> None:
        super().__init__(num_classes=num_classes, dropout=dropout)
        if in_channels != 3:
            self.features[0] = conv_like(self.features[0], in_channels=in_channels)  # default init, as torchvision
        self.feature_info = pool_feature_info(self.features, "features")
        self._taps = frozenset(int(info.name.rsplit(".", 1)[1]) for info in self.feature_info)

    def forward_features(self, x: Tensor) -> list[Tensor]:
        return run_with_taps(self.features, x, self._taps)


class AlexNetSmall(nn.Module):
    """AlexNet's layout for 32 px images (CIFAR, digits or Fashion-MNIST resized).

    Five convolutions with ReLU, overlapping 3x3/2 max-pools after the first, second and fifth (padded, so
    the features are exactly H/2, H/4 and H/8 for even sizes), then three fully connected layers with
    dropout. The first convolution is 5x5 with 64 filters at stride 1: large enough for its filters to be
    worth drawing, small enough for a 32 px input. Submodules are named as in `AlexNet` (features, avgpool,
    classifier).

    Batch normalisation follows each convolution by default, in place of the paper's local response
    normalisation, so that it trains in a few epochs from scratch: on scikit-learn's digits at 32 px, two
    epochs gave 97% top-1 with it and chance without. `batch_norm=False` gives the plain 2012 layout.

    Shape:
        - Input: (B, in_channels, H, W), H and W at least 8.
        - Output: (B, num_classes) logits.
    """

    classifier_names: tuple[str, ...] = ("classifier.6",)
    first_conv: str = "features.0"
    feature_info: list[FeatureInfo]

    def __init__(self, *, num_classes: int = 1000, in_channels: int = 3, batch_norm: bool = True,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.features = _small_features(in_channels, batch_norm)
        self.avgpool = nn.AdaptiveAvgPool2d((4, 4))  # 32 px in -> 4x4 already; other sizes still work
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(128 * 4 * 4, 512),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(512, 512),
            nn.ReLU(inplace=True),
            nn.Linear(512, num_classes),
        )
        self.feature_info = pool_feature_info(self.features, "features")
        self._taps = frozenset(int(info.name.rsplit(".", 1)[1]) for info in self.feature_info)

    def forward_features(self, x: Tensor) -> list[Tensor]:
        return run_with_taps(self.features, x, self._taps)

    def forward(self, x: Tensor) -> Tensor:
        x = self.avgpool(self.features(x))                  # (B, 128, 4, 4)
        return self.classifier(x.flatten(1))


# (filters, kernel, max-pool after it) for each of AlexNet's five convolutions, narrowed for 32 px inputs.
_SMALL_LAYOUT = ((64, 5, True), (128, 5, True), (192, 3, False), (192, 3, False), (128, 3, True))


def _small_features(in_channels: int, batch_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for filters, kernel, pool in _SMALL_LAYOUT:
        layers.append(nn.Conv2d(in_channels, filters, kernel, padding=kernel // 2, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(filters))
        layers.append(nn.ReLU(inplace=True))
        if pool:
            layers.append(nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        in_channels = filters
    return nn.Sequential(*layers)


@register(task="classify", test_input=(3, 64, 64), paper=_PAPER, torchvision="alexnet")
def alexnet(*, num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> AlexNet:
    """AlexNet as in torchvision (224 px ImageNet input; 61M parameters). kwargs: `dropout`."""
    return AlexNet(num_classes=num_classes, in_channels=in_channels, **kwargs)


@register(task="classify", test_input=(3, 32, 32), paper=_PAPER, torchvision=None)
def alexnet_small(*, num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> AlexNetSmall:
    """AlexNet's shape for 32 px images (2.3M parameters with 10 classes). kwargs: `batch_norm`, `dropout`."""
    return AlexNetSmall(num_classes=num_classes, in_channels=in_channels, **kwargs)
