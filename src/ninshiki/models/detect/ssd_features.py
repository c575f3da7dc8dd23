"""The multi-scale feature maps SSD predicts from: Liu et al., "SSD: Single Shot MultiBox Detector" (ECCV 2016),
figure 2.

`VGGFeatures` is torchvision's `SSDFeatureExtractorVGG` (VGG-16 to conv4_3, L2-normalised and rescaled by a
learnt per-channel weight initialised to 20; pool5 made 3x3 stride 1, fc6 as a dilated 3x3 convolution, fc7
as a 1x1; then conv8_2 to conv11_2), with its parameter names, so torchvision's `ssd300_vgg16` weights load
unchanged. `LiteFeatures` is `SmallBackbone` (strides 8, 16, 32) plus stride-2 extra layers, for CPU training.
"""
from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn
from torchvision.models.detection.ssd import SSDFeatureExtractorVGG
from torchvision.models.vgg import cfgs, make_layers

from ninshiki.models.backbones.small import SmallBackbone, conv_bn_act
from ninshiki.models.layers import conv_like
from ninshiki.structures import FeatureInfo


class VGGFeatures(SSDFeatureExtractorVGG):
    """SSD300's six feature maps: conv4_3 (rescaled), fc7, conv8_2, conv9_2, conv10_2, conv11_2.

    Args:
        in_channels: Input image channels.

    Shape:
        - Input: (B, in_channels, H, W), H and W at least 268 (conv11_2 needs a 3x3 conv10_2).
        - Output of `forward_features`: (B, C_i, H_i, W_i) for C = 512, 1024, 512, 256, 256, 256; 38, 19, 10,
          5, 3, 1 pixels square at 300.
    """

    first_conv: str = "features.0"

    def __init__(self, *, in_channels: int = 3) -> None:
        layers = make_layers(cfgs["D"], batch_norm=False)      # VGG-16's convolutions, without its classifier
        if in_channels != 3:
            layers[0] = conv_like(layers[0], in_channels=in_channels)
        for module in layers.modules():                          # torchvision's VGG initialisation
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
        super().__init__(layers, highres=False)
        # Strides of the maps at 300 px, the paper's (and DefaultBoxGenerator's) steps.
        self.feature_info = [FeatureInfo(512, 8, "features"), FeatureInfo(1024, 16, "extra.0")] + [
            FeatureInfo(channels, stride, f"extra.{i + 1}")
            for i, (channels, stride) in enumerate(zip((512, 256, 256, 256), (32, 64, 100, 300)))]

    def forward_features(self, x: Tensor) -> list[Tensor]:
        return list(super().forward(x).values())


class LiteFeatures(nn.Module):
    """`SmallBackbone`'s maps at strides 8, 16 and 32, then one stride-2 extra layer per entry of `extra`.

    Each extra layer is a 1x1 convolution to half its width then a 3x3 stride-2 convolution, with batch norm
    and SiLU as in the backbone (the 1x1-then-3x3 pattern of SSD's conv8_2 to conv11_2).

    Args:
        in_channels: Input image channels.
        width: `SmallBackbone`'s first-stage width.
        extra: Channels of the extra maps, at strides 64, 128, ...

    Shape:
        - Input: (B, in_channels, H, W), H and W multiples of 32.
        - Output of `forward_features`: one map per stride 8, 16, 32, 64, ...; (B, 64, H/8, W/8) first at width 16.
    """

    first_conv: str = "body.stages.0.0.0"

    def __init__(self, *, in_channels: int = 3, width: int = 16, extra: Sequence[int] = (128, 128)) -> None:
        super().__init__()
        self.body = SmallBackbone(in_channels=in_channels, width=width)
        channels, stride = self.body.feature_info[-1].channels, self.body.feature_info[-1].stride
        self.extra = nn.ModuleList()
        self.feature_info = list(self.body.feature_info)
        for index, out in enumerate(extra):
            self.extra.append(nn.Sequential(conv_bn_act(channels, out // 2, 1), conv_bn_act(out // 2, out, 3, 2)))
            channels, stride = out, stride * 2
            self.feature_info.append(FeatureInfo(out, stride, f"extra.{index}"))

    def forward_features(self, x: Tensor) -> list[Tensor]:
        features = self.body.forward_features(x)
        for layer in self.extra:
            features.append(layer(features[-1]))
        return features

    def forward(self, x: Tensor) -> list[Tensor]:
        return self.forward_features(x)
