"""A small convolutional backbone that trains from scratch on a laptop CPU in minutes.

No paper of the survey: ImageNet-pretrained weights cannot be downloaded here, so the CPU variants of the
detectors (`ssd_lite`, `yolov1_small`, `faster_rcnn_small`, ...) need a backbone small enough to train from
nothing. This is a plain residual network in the style of the Darknet / YOLO backbones: a stride-2 3x3
convolution opens each stage, residual blocks (1x1 bottleneck then 3x3) follow, with batch norm and SiLU.
"""
from __future__ import annotations

from torch import Tensor, nn

from ninshiki.structures import FeatureInfo


def conv_bn_act(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.SiLU(inplace=True),
    )


class Residual(nn.Module):
    """x + conv3x3(conv1x1(x)), the bottleneck halving the channels."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn_act(channels, channels // 2, 1), conv_bn_act(channels // 2, channels, 3))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class SmallBackbone(nn.Module):
    """Five stride-2 stages; `forward_features` returns the maps at strides 8, 16 and 32.

    Args:
        in_channels: Input image channels.
        width: Channels of the first stage; stage i has width * 2**i (default 16: 16, 32, 64, 128, 256).
        depth: Residual blocks per stage, from the stride-2 stage on (default (0, 1, 2, 2, 1)).
        out_strides: Which stage outputs `forward_features` returns, by stride (4, 8, 16, 32 possible).

    Shape:
        - Input: (B, C, H, W), H and W multiples of 32.
        - Output of `forward_features`: one (B, width * stride / 2, H / stride, W / stride) map per stride.
    """

    def __init__(self, *, in_channels: int = 3, width: int = 16, depth: tuple[int, ...] = (0, 1, 2, 2, 1),
                 out_strides: tuple[int, ...] = (8, 16, 32)) -> None:
        super().__init__()
        if len(depth) != 5:
            raise ValueError(f"depth gives residual blocks for 5 stages, got {depth}")
        stages, channels = [], in_channels
        for index, blocks in enumerate(depth):
            out = width * 2 ** index
            stages.append(nn.Sequential(conv_bn_act(channels, out, 3, 2), *(Residual(out) for _ in range(blocks))))
            channels = out
        self.stages = nn.ModuleList(stages)
        all_info = [FeatureInfo(width * 2 ** i, 2 ** (i + 1), f"stages.{i}") for i in range(5)]
        unknown = set(out_strides) - {info.stride for info in all_info}
        if unknown:
            raise ValueError(f"out_strides {sorted(unknown)} not in the backbone's strides 2, 4, 8, 16, 32")
        self.feature_info = [info for info in all_info if info.stride in out_strides]
        self._taps = {index for index, info in enumerate(all_info) if info.stride in out_strides}
        self.first_conv = "stages.0.0.0"

    def forward_features(self, x: Tensor) -> list[Tensor]:
        features = []
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index in self._taps:
                features.append(x)
        return features

    def forward(self, x: Tensor) -> list[Tensor]:
        return self.forward_features(x)
