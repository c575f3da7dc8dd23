"""FCN: Long, Shelhamer and Darrell, "Fully Convolutional Networks for Semantic Segmentation" (CVPR 2015).

A classification network made fully convolutional (fc6 / fc7 as 7x7 and 1x1 convolutions), a 1x1 class
scoring layer, and in-network upsampling back to the input. FCN-32s upsamples its stride-32 scores in one
step; FCN-16s first upsamples them 2x (learned, initialised to bilinear) and adds scores of pool4; FCN-8s
does it once more with pool3. The final upsampling is fixed bilinear interpolation, as in the paper.

- `fcn32s_vgg16`, `fcn16s_vgg16`, `fcn8s_vgg16`: the paper's networks with the reference Caffe models'
  geometry: conv1_1 padded by 100 (so any input size gives a score map), ceil-mode pools, fc6 unpadded,
  and the crops 5 (pool4), 9 (pool3) and 19 / 27 / 31 (final) that line every map up with the input. The 13
  convolutions are named as torchvision's (`features.*`); `vgg16_to_fcn` converts a torchvision `vgg16`
  state dict (ImageNet initialisation, as in the paper). 512 px training crops (the paper used whole
  ~500x500 PASCAL images).
- `fcn32s_small`, `fcn16s_small`, `fcn8s_small`: the same decoders on `SmallBackbone` (strides 8, 16, 32),
  trainable from scratch on a CPU, with sample-aligned upsampling (see `fcn_parts`) and no crops.

Staged training as in the paper: train FCN-32s, then `fcn_from_coarser(fcn16s, fcn32s.state_dict())` (the
skip scores are zero-initialised and the 2x upsampling bilinear, so FCN-16s starts out predicting what
FCN-32s does: exactly on the small models' sample-aligned maps, up to the slight smoothing of interpolating
in two steps on the VGG layout), then the same from FCN-16s to FCN-8s.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.models.vgg import cfgs, make_layers

from ninshiki.models.backbones.small import SmallBackbone, conv_bn_act
from ninshiki.models.detect.common import imagenet_normalizer
from ninshiki.models.layers import conv_like, run_with_taps
from ninshiki.models.segment.common import SemanticSegmenter
from ninshiki.models.segment.fcn_parts import BilinearUpsampling, bilinear_upsampling, crop, vgg16_to_fcn
from ninshiki.registry import register
from ninshiki.structures import SegmentationOutput

_PAPER = "Long, Shelhamer and Darrell, Fully Convolutional Networks for Semantic Segmentation, CVPR 2015"
# (learned 2x upsampling, skip score layer) of each fusion step, in the reference models' names.
_SKIPS = (("upscore2", "score_pool4"), ("upscore_pool4", "score_pool3"))


@dataclass(frozen=True)
class FCNGeometry:
    """Where the trunk's samples lie, as the crops that line the maps up (the reference's `coord_map`)."""
    on_samples: bool                                  # sample i of a stride-s map on input pixel s * i
    skip_offsets: tuple[int, int] = (0, 0)            # crop of score_pool4 and score_pool3
    final_offsets: tuple[int, int, int] = (0, 0, 0)   # crop of the final upsampling in 32s, 16s, 8s


class FCN(SemanticSegmenter):
    """The FCN decoder over a trunk that subclasses provide in `extract`.

    Args:
        num_classes: Classes K, background included.
        input_size: Side of the training crops.
        channels: Channels of the trunk's maps, coarsest first: the stride-32 map after fc7, then pool4
            (16s, 8s) and pool3 (8s). Their number, 1 to 3, makes the net FCN-32s, 16s or 8s.
        geometry: The crops of the trunk.
        in_channels: Input image channels (the normaliser's statistics are RGB's, or their mean).

    Shape:
        - images: (B, in_channels, H, W) in [0, 1], H and W multiples of 32.
        - Output: `SegmentationOutput` with logits (B, K, H, W) (float32).
    """

    def __init__(self, *, num_classes: int, input_size: int, channels: tuple[int, ...], geometry: FCNGeometry,
                 in_channels: int = 3, ignore_index: int = 255) -> None:
        super().__init__(num_classes=num_classes, input_size=input_size, ignore_index=ignore_index)
        if not 1 <= len(channels) <= 3:
            raise ValueError(f"FCN fuses 1 to 3 maps (32s, 16s, 8s), got channels {channels}")
        self.geometry = geometry
        self.levels = len(channels)
        self.stride = 32 // 2 ** (self.levels - 1)
        self.normalize = imagenet_normalizer(in_channels)
        self.score_fr = nn.Conv2d(channels[0], num_classes, 1)
        scores, names = [self.score_fr], ["score_fr"]
        for (up, score), skip_channels in zip(_SKIPS, channels[1:]):
            setattr(self, up, bilinear_upsampling(num_classes, 2, on_samples=geometry.on_samples))
            setattr(self, score, nn.Conv2d(skip_channels, num_classes, 1))
            scores.append(getattr(self, score))
            names += [up, score]
        # The paper zero-initialises the class scores; zero skip scores make a finer net start as the coarser.
        for layer in scores:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.classifier_names = tuple(names)
        self.upscore = BilinearUpsampling(channels=num_classes, factor=self.stride, on_samples=geometry.on_samples)

    def extract(self, x: Tensor) -> list[Tensor]:
        """The trunk's maps, coarsest (stride 32, after fc7) first; `len(channels)` of them."""
        raise NotImplementedError

    def forward(self, images: Tensor, targets: Tensor | None = None) -> SegmentationOutput:
        features = self.extract(self.normalize(images))
        return SegmentationOutput(self.decode(features, (images.shape[-2], images.shape[-1])))

    def decode(self, features: list[Tensor], size: tuple[int, int]) -> Tensor:
        """Class scores at the input's `size` from the trunk's maps (score, fuse, upsample, crop).

        Shape:
            - features: (B, C_i, h_i, w_i), coarsest first. Output: (B, K, *size), float32.
        """
        score = self.score_fr(features[0])                          # (B, K, h, w) at stride 32
        for (up, skip), offset, fine in zip(_SKIPS, self.geometry.skip_offsets, features[1:]):
            score = getattr(self, up)(score)                        # (B, K, ~2h, ~2w)
            fine = getattr(self, skip)(fine)                        # (B, K, h', w') one stride finer
            height = min(score.shape[-2], fine.shape[-2] - offset)
            width = min(score.shape[-1], fine.shape[-1] - offset)
            score = crop(score, 0, height, width) + crop(fine, offset, height, width)
        logits = self.upscore(score)                                # (B, K, >= H, >= W), float32
        return crop(logits, self.geometry.final_offsets[len(features) - 1], *size).contiguous()


class FCNVGG16(FCN):
    """FCN on VGG-16 with the reference Caffe models' geometry; parameter names `features.*`, `fc6`, `fc7`.

    Args:
        num_classes, in_channels, input_size: See `FCN`.
        levels: 1, 2 or 3 for FCN-32s, 16s, 8s.
        dropout: Dropout after fc6 and fc7 (the paper's 0.5).
    """

    first_conv: str = "features.0"

    def __init__(self, *, num_classes: int, levels: int, in_channels: int = 3, input_size: int = 512,
                 dropout: float = 0.5) -> None:
        super().__init__(num_classes=num_classes, input_size=input_size, channels=(4096, 512, 256)[:levels],
                         geometry=FCNGeometry(on_samples=False, skip_offsets=(5, 9), final_offsets=(19, 27, 31)),
                         in_channels=in_channels)
        self.features = make_layers(cfgs["D"], batch_norm=False)
        if in_channels != 3:
            self.features[0] = conv_like(self.features[0], in_channels=in_channels)
        self.features[0].padding = (100, 100)   # the reference's: a map of scores for inputs of any size
        for layer in self.features:
            if isinstance(layer, nn.MaxPool2d):
                layer.ceil_mode = True          # Caffe's pooling rounds up
            elif isinstance(layer, nn.Conv2d):  # torchvision's VGG initialisation
                nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(layer.bias)
        # torchvision's init of the Linear layers they replace; skip_init spares a default init of 120M weights.
        device = torch.get_default_device()
        self.fc6 = nn.utils.skip_init(nn.Conv2d, 512, 4096, 7, device=device)
        self.fc7 = nn.utils.skip_init(nn.Conv2d, 4096, 4096, 1, device=device)
        for fc in (self.fc6, self.fc7):
            nn.init.normal_(fc.weight, 0, 0.01)
            nn.init.zeros_(fc.bias)
        self.dropout = nn.Dropout(dropout)
        self._taps = frozenset((30, 23, 16)[:levels])   # pool5, pool4, pool3 in `features`

    def extract(self, x: Tensor) -> list[Tensor]:
        maps = run_with_taps(self.features, x, self._taps)[::-1]   # pool5, pool4, pool3
        x = self.dropout(torch.relu(self.fc6(maps[0])))            # (B, 4096, h5 - 6, w5 - 6)
        x = self.dropout(torch.relu(self.fc7(x)))
        return [x, *maps[1:]]


class FCNSmall(FCN):
    """FCN on `SmallBackbone`: its stride-32 map, fc6 (7x7) and fc7 (1x1) convolutions, skips at 16 and 8.

    fc6 keeps the paper's 7x7 extent: at stride 32 it adds 192 px of context, which the shapes' flat interiors
    need to be told apart by their outlines; on a 10x10 map it costs about 10% of a training step.
    Defaults (width 16, 4.2M parameters) train a batch of 8 at 320 px in about 0.24 s on 2 CPU cores.

    Args:
        num_classes, in_channels, input_size: See `FCN`.
        levels: 1, 2 or 3 for FCN-32s, 16s, 8s.
        width: `SmallBackbone` width (channels 16, 32, ..., 256 at 16).
        depth: `SmallBackbone` residual blocks per stage.
        head_channels: Channels of fc6 and fc7 (default: those of the stride-32 map).
        fc6_kernel: Kernel of fc6 (odd, so samples stay on their pixels).
        dropout: Channel dropout after fc7.
    """

    first_conv: str = "backbone.stages.0.0.0"

    def __init__(self, *, num_classes: int, levels: int, in_channels: int = 3, input_size: int = 320,
                 width: int = 16, depth: tuple[int, ...] = (0, 1, 2, 2, 1), head_channels: int | None = None,
                 fc6_kernel: int = 7, dropout: float = 0.1) -> None:
        backbone = SmallBackbone(in_channels=in_channels, width=width, depth=tuple(depth), out_strides=(8, 16, 32))
        pool3, pool4, pool5 = (info.channels for info in backbone.feature_info)
        head = head_channels or pool5
        if fc6_kernel % 2 != 1:
            raise ValueError(f"fc6_kernel must be odd to keep the maps aligned with the input, got {fc6_kernel}")
        super().__init__(num_classes=num_classes, input_size=input_size, channels=(head, pool4, pool3)[:levels],
                         geometry=FCNGeometry(on_samples=True), in_channels=in_channels)
        self.backbone = backbone
        self.head = nn.Sequential(conv_bn_act(pool5, head, fc6_kernel), conv_bn_act(head, head, 1),
                                  nn.Dropout2d(dropout))

    def extract(self, x: Tensor) -> list[Tensor]:
        pool3, pool4, pool5 = self.backbone.forward_features(x)
        return [self.head(pool5), pool4, pool3][:self.levels]


def fcn_from_coarser(fine: FCN, coarse_state: Mapping[str, Tensor]) -> FCN:
    """The paper's staged training: initialise FCN-16s from a trained FCN-32s (or FCN-8s from FCN-16s).

    Every tensor of `coarse_state` is copied into `fine`; the layers only the finer net has (its 2x
    upsampling and skip scores) keep their initialisation, bilinear and zero, so `fine` starts out predicting
    what the coarser net does (exactly for the sample-aligned small models; the VGG nets' half-pixel layout
    makes 2x-then-16x bilinear interpolation only approximate one 32x step). Returns `fine`.

    Raises:
        ValueError: `coarse_state` has keys or shapes `fine` lacks, or misses any of `fine`'s trunk.
    """
    own = fine.state_dict()
    unexpected = [key for key in coarse_state if key not in own]
    mismatched = [key for key in coarse_state if key in own and coarse_state[key].shape != own[key].shape]
    new_layers = tuple(f"{name}." for pair in _SKIPS for name in pair)
    missing = [key for key in own if key not in coarse_state and not key.startswith(new_layers)]
    if unexpected or mismatched or missing:
        raise ValueError(f"the state dict is not of a coarser FCN of {type(fine).__name__}'s trunk and classes: "
                         f"unexpected {unexpected[:5]}, shape mismatches {mismatched[:5]}, missing {missing[:5]}")
    fine.load_state_dict(dict(coarse_state), strict=False)
    return fine


def _factory(cls: type[FCN], levels: int, num_classes: int, in_channels: int, options: dict[str, Any]) -> FCN:
    backbone_weights = options.pop("backbone_weights", None)
    model = cls(num_classes=num_classes, in_channels=in_channels, levels=levels, **options)
    if backbone_weights is not None:
        if cls is not FCNVGG16:
            raise ValueError("backbone_weights: only the VGG-16 FCNs start from a torchvision vgg16 file")
        load_vgg16_weights(model, backbone_weights)
    return model


def load_vgg16_weights(model: FCN, path: str | os.PathLike[str]) -> None:
    """Initialise an FCN's VGG-16 trunk (and fc6 / fc7) from a torchvision `vgg16` weights file, as the paper
    starts from ImageNet; the score and upsampling layers keep their initialisation.

    Raises:
        ValueError: the file is not a VGG-16 state dict, or does not fit the model (the message names it).
    """
    from ninshiki.models.weights import read_state_dict

    try:
        converted = vgg16_to_fcn(read_state_dict(path))
        result = model.load_state_dict(converted, strict=False)
    except (ValueError, RuntimeError) as error:
        raise ValueError(f"{path}: cannot initialise {type(model).__name__} from it ({error})") from None
    heads = tuple(f"{name}." for name in model.classifier_names)
    stray = [key for key in result.missing_keys if not key.startswith(heads)] + list(result.unexpected_keys)
    if stray:
        raise ValueError(f"{path}: does not fit {type(model).__name__}: {stray[:6]}")


@register(task="segment", test_input=(3, 32, 32), paper=_PAPER)
def fcn32s_vgg16(*, num_classes: int = 21, in_channels: int = 3, **options: Any) -> FCN:
    """FCN-32s on VGG-16 (134M parameters at 21 classes). options: `input_size` (512), `dropout` (0.5),
    `backbone_weights` (a torchvision vgg16 file: ImageNet initialisation)."""
    return _factory(FCNVGG16, 1, num_classes, in_channels, options)


@register(task="segment", test_input=(3, 32, 32), paper=_PAPER)
def fcn16s_vgg16(*, num_classes: int = 21, in_channels: int = 3, **options: Any) -> FCN:
    """FCN-16s on VGG-16: FCN-32s plus pool4 scores. options: `input_size` (512), `dropout` (0.5),
    `backbone_weights` (a torchvision vgg16 file: ImageNet initialisation)."""
    return _factory(FCNVGG16, 2, num_classes, in_channels, options)


@register(task="segment", test_input=(3, 32, 32), paper=_PAPER)
def fcn8s_vgg16(*, num_classes: int = 21, in_channels: int = 3, **options: Any) -> FCN:
    """FCN-8s on VGG-16: FCN-16s plus pool3 scores. options: `input_size` (512), `dropout` (0.5),
    `backbone_weights` (a torchvision vgg16 file: ImageNet initialisation)."""
    return _factory(FCNVGG16, 3, num_classes, in_channels, options)


@register(task="segment", test_input=(3, 64, 64), paper=_PAPER)
def fcn32s_small(*, num_classes: int = 21, in_channels: int = 3, **options: Any) -> FCN:
    """FCN-32s on `SmallBackbone`, CPU-trainable. options: `input_size` (320), `width`, `depth`,
    `head_channels`, `fc6_kernel` (7), `dropout`; see `FCNSmall`."""
    return _factory(FCNSmall, 1, num_classes, in_channels, options)


@register(task="segment", test_input=(3, 64, 64), paper=_PAPER)
def fcn16s_small(*, num_classes: int = 21, in_channels: int = 3, **options: Any) -> FCN:
    """FCN-16s on `SmallBackbone`, CPU-trainable. options as `fcn32s_small`."""
    return _factory(FCNSmall, 2, num_classes, in_channels, options)


@register(task="segment", test_input=(3, 64, 64), paper=_PAPER)
def fcn8s_small(*, num_classes: int = 21, in_channels: int = 3, **options: Any) -> FCN:
    """FCN-8s on `SmallBackbone`, CPU-trainable. options as `fcn32s_small`."""
    return _factory(FCNSmall, 3, num_classes, in_channels, options)
