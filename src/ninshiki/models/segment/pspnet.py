"""PSPNet: Zhao, Shi, Qi, Wang and Jia, "Pyramid Scene Parsing Network" (CVPR 2017, arXiv:1612.01105).

A dilated ResNet keeps its last two stages at output stride 8 (dilation 2 and 4 instead of stride 2), and the
pyramid pooling module (section 3.2) adds global context to its final map: average pooling into 1x1, 2x2,
3x3 and 6x6 bins, a 1x1 convolution to C/4 channels, BN and ReLU per level, bilinear upsampling back to the
map's size, and concatenation with the map itself. A 3x3 convolution to 512 channels, BN, ReLU, dropout 0.1
and a 1x1 classifier follow; the logits are upsampled bilinearly to the input. An auxiliary head on layer3
(3x3 convolution to 256, BN, ReLU, dropout 0.1, 1x1 classifier; section 3.3, "deep supervision") adds its
loss with weight 0.4 in training; in evaluation it is not computed. Pyramid levels are upsampled with
align_corners=True, as the authors' Caffe `Interp` layer and their PyTorch code (semseg) do.

- `pspnet_resnet50`: torchvision's ResNet-50 with `replace_stride_with_dilation=(False, True, True)`; its
  parameter names are torchvision's under `backbone.` (`fc` is dropped), so `backbone_weights` loads an
  ImageNet `resnet50` file into it (`resnet_to_pspnet` converts the state dict). The paper's ResNet has a
  three-convolution stem; torchvision's one 7x7 convolution is kept so that its weights load. Training crops
  default to 480 px, the paper's 473 rounded up to the multiple of 32 the `Segmenter` contract asks for.
- `pspnet_small`: a narrow dilated residual network (16-128 channels, 0.8M parameters), the same pyramid
  pooling and auxiliary head, narrower heads; trains from scratch on a CPU at 320 px.

Training needs batches of at least 2: the 1x1 pyramid level's batch norm sees one value per channel per image.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ninshiki.models.classify.resnet import ResNet, resnet50
from ninshiki.models.detect.common import imagenet_normalizer
from ninshiki.models.segment.common import IGNORE_INDEX, SemanticSegmenter, upsample_to
from ninshiki.models.segment.pspnet_parts import DilatedResNetSmall
from ninshiki.models.weights import read_state_dict
from ninshiki.registry import register
from ninshiki.structures import FeatureInfo, SegmentationOutput

_PAPER = "Zhao, Shi, Qi, Wang and Jia, Pyramid Scene Parsing Network, CVPR 2017"
PYRAMID_BINS = (1, 2, 3, 6)


class PyramidPooling(nn.Module):
    """The pyramid pooling module: the input with its average-pooled, projected and upsampled pyramid.

    Args:
        in_channels: Channels C of the input map.
        bins: Pyramid levels, as the side of the pooled map of each.
        channels: Channels of each level after its 1x1 convolution (default C / len(bins), the paper's).

    Shape:
        - Input: (B, C, h, w). Output: (B, C + len(bins) * channels, h, w).
    """

    def __init__(self, *, in_channels: int, bins: Sequence[int] = PYRAMID_BINS, channels: int | None = None) -> None:
        super().__init__()
        channels = channels or in_channels // len(bins)
        self.levels = nn.ModuleList(nn.Sequential(
            nn.AdaptiveAvgPool2d(size), nn.Conv2d(in_channels, channels, 1, bias=False), nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True)) for size in bins)
        self.out_channels = in_channels + len(bins) * channels

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        pyramid = [F.interpolate(level(x), size=size, mode="bilinear", align_corners=True)   # (B, channels, h, w)
                   for level in self.levels]
        return torch.cat([x, *pyramid], dim=1)   # (B, out_channels, h, w)


def _conv_head(in_channels: int, channels: int, dropout: float) -> nn.Sequential:
    """3x3 convolution, BN, ReLU and dropout: what comes before each 1x1 classifier."""
    return nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
                         nn.ReLU(inplace=True), nn.Dropout2d(dropout))


class PSPNet(SemanticSegmenter):
    """Pyramid pooling and a classifier on a backbone's last map, an auxiliary classifier on the one before.

    Args:
        backbone: Has `forward_features(x)` (the last two maps feed the heads), `feature_info` and `first_conv`.
        num_classes: Classes K, background included.
        in_channels: Input image channels (for the normalisation's statistics).
        input_size: Side of the training crops.
        bins: Pyramid levels.
        head_channels: Channels of the main head's 3x3 convolution (512 in the paper).
        aux_channels: Channels of the auxiliary head's 3x3 convolution (256 in the paper).
        dropout: Dropout before both classifiers.
        ignore_index: Target value of unlabelled pixels.

    Shape:
        - images: (B, in_channels, H, W) RGB in [0, 1], H and W multiples of 8 (32 by the contract).
        - Output: `SegmentationOutput`, logits (B, K, H, W); in training mode one (B, K, H, W) aux logits.
    """

    classifier_names = ("classifier", "aux_classifier")

    def __init__(self, *, backbone: nn.Module, num_classes: int, in_channels: int = 3, input_size: int,
                 bins: Sequence[int] = PYRAMID_BINS, head_channels: int = 512, aux_channels: int = 256,
                 dropout: float = 0.1, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__(num_classes=num_classes, input_size=input_size, ignore_index=ignore_index, aux_weight=0.4)
        info: list[FeatureInfo] = backbone.feature_info
        self.normalizer = imagenet_normalizer(in_channels)
        self.backbone = backbone
        self.first_conv = f"backbone.{backbone.first_conv}"
        self.pyramid = PyramidPooling(in_channels=info[-1].channels, bins=bins)
        self.head = _conv_head(self.pyramid.out_channels, head_channels, dropout)
        self.classifier = nn.Conv2d(head_channels, num_classes, 1)
        self.aux_head = _conv_head(info[-2].channels, aux_channels, dropout)
        self.aux_classifier = nn.Conv2d(aux_channels, num_classes, 1)
        for module in (self.pyramid, self.head, self.aux_head):
            for conv in module.modules():
                if isinstance(conv, nn.Conv2d):
                    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, images: Tensor, targets: Tensor | None = None) -> SegmentationOutput:
        *_, before_last, last = self.backbone.forward_features(self.normalizer(images))   # (B, C, H/8, W/8)
        logits = self.classifier(self.head(self.pyramid(last)))                        # (B, K, H/8, W/8)
        aux: tuple[Tensor, ...] = ()
        if self.training:
            aux_logits = self.aux_classifier(self.aux_head(before_last))               # (B, K, H/8, W/8)
            aux = (upsample_to(aux_logits, images.shape[-2:]),)
        return SegmentationOutput(upsample_to(logits, images.shape[-2:]), aux)       # (B, K, H, W)


def resnet_to_pspnet(state_dict: Mapping[str, Tensor], *, in_channels: int = 3) -> dict[str, Tensor]:
    """PSPNet backbone weights from a torchvision (or ninshiki) ResNet state dict.

    Every key gains the prefix `backbone.` and the ImageNet classifier `fc.*` is dropped. For `in_channels=1`
    the first convolution is summed over RGB, so a gray image gives the response its RGB replica would.

    Raises:
        ValueError: the state dict has no `conv1.weight`, or `in_channels` is neither 1 nor 3.
    """
    if "conv1.weight" not in state_dict:
        raise ValueError(f"not a ResNet state dict: no 'conv1.weight' among {sorted(state_dict)[:5]}...")
    backbone = {f"backbone.{key}": value for key, value in state_dict.items() if not key.startswith("fc.")}
    if in_channels == 1:
        backbone["backbone.conv1.weight"] = backbone["backbone.conv1.weight"].sum(dim=1, keepdim=True)
    elif in_channels != 3:
        raise ValueError(f"ImageNet ResNet weights take 3 (or, summed, 1) input channels, not {in_channels}")
    return backbone


def load_backbone_weights(model: PSPNet, path: str | os.PathLike[str]) -> None:
    """Load a ResNet weights file (torchvision's or ninshiki's layout) into `model`'s backbone, strictly.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: the file is unreadable or does not fit the backbone (naming the file and the keys).
    """
    in_channels = model.backbone.get_submodule(model.backbone.first_conv).in_channels
    try:
        state = resnet_to_pspnet(read_state_dict(path), in_channels=in_channels)
        model.backbone.load_state_dict({key[len("backbone."):]: value for key, value in state.items()})
    except (RuntimeError, ValueError) as e:  # load_state_dict raises RuntimeError listing keys and shapes
        raise ValueError(f"{path} does not fit PSPNet's ResNet backbone: {e}") from e


def dilated_resnet50(*, in_channels: int = 3) -> ResNet:
    """torchvision's ResNet-50 at output stride 8 (layer3 dilated by 2, layer4 by 4), without its classifier."""
    backbone = resnet50(num_classes=1000, in_channels=in_channels, replace_stride_with_dilation=(False, True, True))
    backbone.fc = nn.Identity()   # no unused parameters (DDP would complain); `forward_features` never reaches it
    return backbone


@register(task="segment", test_input=(3, 64, 64), paper=_PAPER)
def pspnet_resnet50(*, num_classes: int = 21, in_channels: int = 3, input_size: int = 480,
                    ignore_index: int = IGNORE_INDEX, backbone_weights: str | os.PathLike[str] | None = None) -> PSPNet:
    """The paper's PSPNet on a dilated ResNet-50 (49.0M parameters at 21 classes, 2.4M of them in the auxiliary head).

    `backbone_weights`: a torchvision `resnet50` weights file loaded into the backbone (ImageNet pre-training).
    """
    model = PSPNet(backbone=dilated_resnet50(in_channels=in_channels), num_classes=num_classes,
                   in_channels=in_channels, input_size=input_size, ignore_index=ignore_index)
    if backbone_weights is not None:
        load_backbone_weights(model, backbone_weights)
    return model


@register(task="segment", test_input=(3, 32, 32), paper=_PAPER)
def pspnet_small(*, num_classes: int = 21, in_channels: int = 3, input_size: int = 320, width: int = 16,
                 ignore_index: int = IGNORE_INDEX) -> PSPNet:
    """PSPNet on `DilatedResNetSmall` (channels `width` .. 8 * `width`), heads of 4 and 2 * `width` channels."""
    backbone = DilatedResNetSmall(in_channels=in_channels, width=width)
    return PSPNet(backbone=backbone, num_classes=num_classes, in_channels=in_channels, input_size=input_size,
                  head_channels=4 * width, aux_channels=2 * width, ignore_index=ignore_index)
