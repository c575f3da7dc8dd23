"""SegNet: Badrinarayanan, Kendall and Cipolla, "SegNet: A Deep Convolutional Encoder-Decoder Architecture
for Image Segmentation" (TPAMI 2017, arXiv:1511.00561).

The encoder is VGG-16's 13 convolutions, each followed by batch normalisation and ReLU, with a 2x2 max-pool
closing each of its five stages that remembers where every maximum came from (its indices). The decoder
mirrors the encoder: each stage first upsamples with `nn.MaxUnpool2d`, which puts every value back where its
encoder maximum was and zeros elsewhere (no learned upsampling, the paper's point: boundaries are recovered
from the indices, and only 2 bits per window need keeping), then densifies the sparse map with conv-BN-ReLU
layers, each the mirror image of an encoder convolution (channels b -> a for the encoder's a -> b). The
mirror of the first encoder convolution is the classifier: a 3x3 convolution to K classes with no BN or
ReLU, as in the authors' Caffe model (conv1_1_D). Logits come out at the input resolution, no interpolation.

- `segnet_vgg16`: the paper's network (29.4M parameters at 21 classes). Its encoder has torchvision's
  `vgg16_bn` layout (`features.i` there is `encoder.i` here): `vgg16_bn_to_segnet` converts that state dict,
  and the factory's `encoder_weights` loads ImageNet weights into the encoder (the paper's initialisation;
  the decoder starts from He et al.'s). Training crops default to 512 px: the paper trained on 360x480
  CamVid frames, which fit whole in a 512 crop, as do VOC's images (at most 500 px a side).
- `segnet_small`: the same design with five narrow stages of 1, 1, 1, 2 and 2 convolutions (16-128 channels,
  1.1M parameters; depth where the maps are small and convolutions cheap), for training from scratch on a CPU
  at 320 px.

The paper's class-balancing weights (median frequency) are a property of the training set, not of the
network; the shared loss of `SemanticSegmenter` is unweighted.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from ninshiki.models.detect.common import imagenet_normalizer
from ninshiki.models.segment.common import IGNORE_INDEX, SemanticSegmenter
from ninshiki.models.weights import read_state_dict
from ninshiki.registry import register
from ninshiki.structures import SegmentationOutput

_PAPER = ("Badrinarayanan, Kendall and Cipolla, SegNet: A Deep Convolutional Encoder-Decoder Architecture "
          "for Image Segmentation, TPAMI 2017")
VGG16_STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
SMALL_STAGES = ((1,), (2,), (4,), (8, 8), (8, 8))   # multiples of `width`; depth where the maps are small


def _conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    # Biased convolutions before BN, as torchvision's vgg16_bn (so its weights load) and the Caffe model.
    return [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]


def _encoder(in_channels: int, stages: Sequence[Sequence[int]]) -> nn.Sequential:
    """conv-BN-ReLU layers and index-returning 2x2 max-pools, indexed exactly as torchvision's VGG `features`."""
    layers: list[nn.Module] = []
    channels = in_channels
    for widths in stages:
        for width in widths:
            layers += _conv_bn_relu(channels, width)
            channels = width
        layers.append(nn.MaxPool2d(2, 2, return_indices=True))
    return nn.Sequential(*layers)


def _decoder(in_channels: int, stages: Sequence[Sequence[int]]) -> nn.ModuleList:
    """One Sequential per encoder stage, deepest first, of the mirrored convolutions (b -> a for a -> b).

    The first encoder convolution's mirror is left out: the classifier takes its place.
    """
    decoder = []
    for index in reversed(range(len(stages))):
        widths = list(stages[index])
        inputs = [stages[index - 1][-1] if index else in_channels] + widths[:-1]   # each conv's input channels
        mirrored = list(zip(widths, inputs))[::-1]
        if index == 0:
            mirrored = mirrored[:-1]
        decoder.append(nn.Sequential(*(layer for b, a in mirrored for layer in _conv_bn_relu(b, a))))
    return nn.ModuleList(decoder)


class SegNet(SemanticSegmenter):
    """An encoder-decoder segmenter whose decoder upsamples with the encoder's max-pooling indices.

    Args:
        stages: Output channels of each encoder convolution, one tuple per pooling stage.
        num_classes: Classes K, background included.
        in_channels: Input image channels.
        input_size: Side of the training crops.
        ignore_index: Target value of unlabelled pixels.

    Shape:
        - images: (B, in_channels, H, W) RGB in [0, 1], H and W at least 2**len(stages) (multiples of it
          keep every pooling window whole).
        - Output: `SegmentationOutput` with logits (B, K, H, W) and no auxiliary logits.
    """

    classifier_names = ("classifier",)
    first_conv = "encoder.0"

    def __init__(self, *, stages: Sequence[Sequence[int]], num_classes: int, in_channels: int = 3,
                 input_size: int, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__(num_classes=num_classes, input_size=input_size, ignore_index=ignore_index)
        if not stages or not all(stages):
            raise ValueError(f"SegNet needs at least one stage of at least one convolution, got {stages}")
        self.normalizer = imagenet_normalizer(in_channels)
        self.encoder = _encoder(in_channels, stages)
        self.unpool = nn.MaxUnpool2d(2, 2)
        self.decoder = _decoder(in_channels, stages)
        self.classifier = nn.Conv2d(stages[0][0], num_classes, 3, padding=1)
        self._init_weights()

    def _init_weights(self) -> None:
        # The paper initialises encoder and decoder with He et al.'s scheme (torchvision's VGG init).
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def encode(self, x: Tensor) -> tuple[Tensor, list[tuple[Tensor, torch.Size]]]:
        """The encoder's output and, per stage, the pooling indices and the size of the map before pooling.

        Shape:
            - x: (B, C, H, W) normalised images. Output: (B, C_last, H / 2**S, W / 2**S), and per stage s
              indices (B, C_s, H_s / 2, W_s / 2) into the flattened (H_s, W_s) map before pooling.
        """
        pooled = []
        for layer in self.encoder:
            if isinstance(layer, nn.MaxPool2d):
                size = x.shape[-2:]
                x, indices = layer(x)
                pooled.append((indices, size))
            else:
                x = layer(x)
        return x, pooled

    def forward(self, images: Tensor, targets: Tensor | None = None) -> SegmentationOutput:
        x, pooled = self.encode(self.normalizer(images))
        for stage, (indices, size) in zip(self.decoder, reversed(pooled)):
            # output_size restores odd sizes that pooling floored
            x = stage(self.unpool(x, indices, output_size=size))   # (B, C_s, H_s, W_s)
        return SegmentationOutput(self.classifier(x))                # (B, K, H, W)


def vgg16_bn_to_segnet(state_dict: Mapping[str, Tensor], *, in_channels: int = 3) -> dict[str, Tensor]:
    """SegNet encoder weights from a torchvision (or ninshiki) `vgg16_bn` state dict.

    `features.i.*` becomes `encoder.i.*` and the fully connected `classifier.*` is dropped (SegNet has no
    fully connected layers). For `in_channels=1` the first convolution is summed over RGB, so a gray image
    gives the response its RGB replica would.

    Raises:
        ValueError: the state dict has no `features.*` keys, or `in_channels` is neither 1 nor 3.
    """
    encoder = {f"encoder.{key[len('features.'):]}": value for key, value in state_dict.items()
               if key.startswith("features.")}
    if not encoder:
        raise ValueError(f"not a VGG state dict: no 'features.*' keys among {sorted(state_dict)[:5]}...")
    if in_channels == 1:
        encoder["encoder.0.weight"] = encoder["encoder.0.weight"].sum(dim=1, keepdim=True)
    elif in_channels != 3:
        raise ValueError(f"ImageNet VGG weights take 3 (or, summed, 1) input channels, not {in_channels}")
    return encoder


def load_encoder_weights(model: SegNet, path: str | os.PathLike[str]) -> None:
    """Load a `vgg16_bn` weights file (torchvision's or ninshiki's layout) into `model`'s encoder, strictly.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: the file is unreadable or does not fit the encoder (naming the file and the keys).
    """
    in_channels = model.encoder[0].in_channels
    try:
        state = vgg16_bn_to_segnet(read_state_dict(path), in_channels=in_channels)
        model.encoder.load_state_dict({key[len("encoder."):]: value for key, value in state.items()})
    except (RuntimeError, ValueError) as e:  # load_state_dict raises RuntimeError listing keys and shapes
        raise ValueError(f"{path} does not fit SegNet's VGG-16 encoder: {e}") from e


@register(task="segment", test_input=(3, 32, 32), paper=_PAPER)
def segnet_vgg16(*, num_classes: int = 21, in_channels: int = 3, input_size: int = 512,
                 ignore_index: int = IGNORE_INDEX, encoder_weights: str | os.PathLike[str] | None = None) -> SegNet:
    """The paper's SegNet: VGG-16-BN encoder, mirrored decoder (29.4M parameters at 21 classes).

    `encoder_weights`: a torchvision `vgg16_bn` weights file loaded into the encoder (ImageNet pre-training).
    """
    model = SegNet(stages=VGG16_STAGES, num_classes=num_classes, in_channels=in_channels, input_size=input_size,
                   ignore_index=ignore_index)
    if encoder_weights is not None:
        load_encoder_weights(model, encoder_weights)
    return model


@register(task="segment", test_input=(3, 32, 32), paper=_PAPER)
def segnet_small(*, num_classes: int = 21, in_channels: int = 3, input_size: int = 320, width: int = 16,
                 ignore_index: int = IGNORE_INDEX) -> SegNet:
    """A narrow five-stage SegNet (`width` .. 8 * `width` channels; 1.1M parameters at width 16) for CPUs."""
    stages = tuple(tuple(width * m for m in stage) for stage in SMALL_STAGES)
    return SegNet(stages=stages, num_classes=num_classes, in_channels=in_channels, input_size=input_size,
                  ignore_index=ignore_index)
