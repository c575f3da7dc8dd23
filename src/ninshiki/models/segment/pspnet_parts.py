"""Parts of PSPNet (pspnet.py): the CPU-scale dilated backbone and the input normalisation.

No paper of the survey: ImageNet weights cannot be downloaded here, so `pspnet_small` needs a backbone that
trains from nothing in minutes. `DilatedResNetSmall` is a narrow ResNet of He et al.'s basic blocks laid out
as the dilated ResNets of PSPNet and DeepLab (Yu and Koltun's "dilated residual networks"): strides 2, 4 and 8,
then two stages that dilate their convolutions by 2 and 4 instead of striding, so that the last maps keep
stride 8 and the receptive field still grows.
"""
from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ninshiki.structures import FeatureInfo

_STAGES = ("layer1", "layer2", "layer3", "layer4")


class DilatedBlock(nn.Module):
    """He et al.'s basic block (two 3x3 conv-BN, ReLU between and after the sum) with dilated convolutions.

    The shortcut is a 1x1 convolution and BN when the stride or the channels change (the paper's option B).

    Shape:
        - Input: (B, in_channels, H, W). Output: (B, out_channels, H / stride, W / stride).
    """

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride, padding=dilation, dilation=dilation, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=dilation, dilation=dilation, bias=False),
            nn.BatchNorm2d(out_channels))
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                          nn.BatchNorm2d(out_channels))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class DilatedResNetSmall(nn.Module):
    """A narrow residual network at output stride 8: a stride-2 stem, then layer1..layer4.

    layer1 and layer2 halve the resolution (strides 4 and 8); layer3 and layer4 dilate by 2 and 4 instead.
    `forward_features` returns the four stage outputs, as ninshiki's ResNet does, so PSPNet reads the last
    two the same way on either backbone.

    Args:
        in_channels: Input image channels.
        width: Stem channels; layer1..layer4 have 2, 4, 8 and 8 times as many (default 16: 32, 64, 128, 128).
        depth: Blocks per stage.

    Shape:
        - Input: (B, in_channels, H, W), H and W multiples of 8.
        - Output of `forward_features`: (B, 2w, H/4, W/4), (B, 4w, H/8, W/8), (B, 8w, H/8, W/8), (B, 8w, H/8, W/8).
    """

    first_conv = "stem.0"

    def __init__(self, *, in_channels: int = 3, width: int = 16, depth: Sequence[int] = (1, 1, 1, 1)) -> None:
        super().__init__()
        if len(depth) != 4 or min(depth) < 1:
            raise ValueError(f"depth gives at least one block for each of 4 stages, got {tuple(depth)}")
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU(inplace=True))
        channels, stride, self.feature_info = width, 2, []
        plan = ((2 * width, 2, 1), (4 * width, 2, 1), (8 * width, 1, 2), (8 * width, 1, 4))  # (out, stride, dilation)
        for name, (out, step, dilation), blocks in zip(_STAGES, plan, depth):
            layers = [DilatedBlock(channels, out, stride=step, dilation=dilation)]
            layers += [DilatedBlock(out, out, dilation=dilation) for _ in range(blocks - 1)]
            self.add_module(name, nn.Sequential(*layers))
            channels, stride = out, stride * step
            self.feature_info.append(FeatureInfo(out, stride, name))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):   # torchvision's ResNet initialisation
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: Tensor) -> list[Tensor]:
        x = self.stem(x)   # (B, w, H/2, W/2)
        features = []
        for name in _STAGES:
            x = getattr(self, name)(x)
            features.append(x)
        return features

    def forward(self, x: Tensor) -> list[Tensor]:
        return self.forward_features(x)
