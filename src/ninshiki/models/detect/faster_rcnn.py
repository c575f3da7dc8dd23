"""Faster R-CNN: Ren, He, Girshick and Sun, "Faster R-CNN: Towards Real-Time Object Detection with Region
Proposal Networks" (NeurIPS 2015, arXiv:1506.01497). The registered variants.

- `faster_rcnn_resnet50_fpn`: torchvision's `fasterrcnn_resnet50_fpn` (ResNet-50 + FPN, five levels, RoIAlign
  over levels, two 1024-wide fully connected layers); the same parameter names, so its checkpoints load, and
  the same proposals and box-head outputs for the same normalised input.
- `faster_rcnn_vgg16`: the paper's network: VGG-16 up to conv5_3 (stride 16), one level of 9 anchors (3 sizes
  x 3 aspect ratios), 7x7 RoI pooling, fc6 / fc7 of 4096 with dropout, and the paper's proposal counts.
- `faster_rcnn_small`: `SmallBackbone` with a 64-channel FPN and a 256-wide head, for training from scratch
  on a CPU at 320 px.

Every factory takes `FasterRCNNConfig` fields as keyword arguments (anchor_sizes, aspect_ratios, rpn_* and
roi_* sampling, pre / post NMS top-n, score_threshold, nms_iou, max_detections) besides its own. Default
anchor sizes scale with `input_size` (the paper's are for 600 px images); explicit ones are used as given.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn
from torchvision.models.detection.faster_rcnn import TwoMLPHead
from torchvision.models.resnet import Bottleneck
from torchvision.models.vgg import cfgs, make_layers
from torchvision.ops import MultiScaleRoIAlign

from ninshiki.models.backbones.small import SmallBackbone
from ninshiki.models.classify.resnet import ResNet
from ninshiki.models.detect.faster_rcnn_config import FasterRCNNConfig, split_config_kwargs
from ninshiki.models.detect.faster_rcnn_model import FasterRCNN
from ninshiki.models.detect.faster_rcnn_parts import (
    PyramidBackbone,
    SingleLevelBackbone,
    SingleLevelRoIPool,
    VGGBoxHead,
)
from ninshiki.models.layers import conv_like
from ninshiki.registry import register

_PAPER = ("Ren, He, Girshick and Sun, Faster R-CNN: Towards Real-Time Object Detection with Region Proposal "
          "Networks, NeurIPS 2015")
_RESNET_LAYERS = ("layer4", "layer3", "layer2", "layer1", "conv1")
_VGG16_CONV5_3 = 30        # VGG-16's features[:30] ends with conv5_3 and its ReLU, before the last max-pool
_VGG16_CONV3_1 = 10        # features[:10] are conv1_1 .. conv2_2, which the paper does not fine-tune


def _config(defaults: FasterRCNNConfig, kwargs: dict[str, Any], *, input_size: int,
            reference_size: int) -> tuple[FasterRCNNConfig, dict[str, Any]]:
    """The config from `defaults` and kwargs, default anchors scaled from `reference_size` to `input_size`."""
    if "anchor_sizes" not in kwargs and input_size != reference_size:
        scale = input_size / reference_size
        kwargs = {**kwargs, "anchor_sizes": tuple(tuple(s * scale for s in level) for level in defaults.anchor_sizes)}
    return split_config_kwargs(defaults, kwargs)


@register(task="detect", test_input=(3, 64, 64), paper=_PAPER, torchvision="fasterrcnn_resnet50_fpn")
def faster_rcnn_resnet50_fpn(*, num_classes: int, in_channels: int = 3, **kwargs: Any) -> FasterRCNN:
    """ResNet-50-FPN Faster R-CNN as torchvision builds it (41.8M parameters at 90 classes).

    kwargs: `input_size` (800, torchvision's shorter side), `trainable_backbone_layers` (5: all; torchvision
    fine-tunes its pretrained detectors with 3), `frozen_batchnorm` (False; True for fine-tuning, as
    torchvision's pretrained detectors), and `FasterRCNNConfig` fields (defaults: torchvision's).
    """
    config, rest = _config(FasterRCNNConfig(), kwargs, input_size=kwargs.get("input_size", 800), reference_size=800)
    return _resnet50_fpn(num_classes, in_channels, config, **rest)


def _resnet50_fpn(num_classes: int, in_channels: int, config: FasterRCNNConfig, *, input_size: int = 800,
                  trainable_backbone_layers: int = 5, frozen_batchnorm: bool = False,
                  detector: Callable[..., FasterRCNN] = FasterRCNN) -> FasterRCNN:
    if not 0 <= trainable_backbone_layers <= 5:
        raise ValueError(f"trainable_backbone_layers must be in [0, 5], got {trainable_backbone_layers}")
    body = ResNet(block=Bottleneck, layers=(3, 4, 6, 3), in_channels=in_channels)
    del body.fc, body.avgpool      # not part of the detector, nor of torchvision's checkpoints
    trainable = _RESNET_LAYERS[:trainable_backbone_layers] + (("bn1",) if trainable_backbone_layers == 5 else ())
    for name, parameter in body.named_parameters():
        if not name.startswith(trainable):
            parameter.requires_grad_(False)
    backbone = PyramidBackbone(body, out_channels=256)
    roi_pool = MultiScaleRoIAlign(featmap_names=["0", "1", "2", "3"], output_size=7, sampling_ratio=2)
    model = detector(backbone=backbone, roi_pool=roi_pool, box_head=TwoMLPHead(256 * 7 * 7, 1024),
                     representation_size=1024, num_classes=num_classes, config=config, input_size=input_size,
                     in_channels=in_channels, first_conv="backbone.body.conv1")
    if frozen_batchnorm:
        model.freeze_batchnorm(body)
    return model


# The paper's settings (its Section 3.3 and the released py-faster-rcnn): one image per step, 256 anchors and
# 128 RoIs (a quarter positive), 12000 / 6000 proposals before NMS and 2000 / 300 after, for 600 px images.
_VGG16_DEFAULTS = FasterRCNNConfig(
    anchor_sizes=((128, 256, 512),), rpn_pre_nms_top_n_train=12000, rpn_pre_nms_top_n_test=6000,
    rpn_post_nms_top_n_train=2000, rpn_post_nms_top_n_test=300, roi_batch_size=128)


@register(task="detect", test_input=(3, 128, 128), paper=_PAPER, torchvision=None)
def faster_rcnn_vgg16(*, num_classes: int, in_channels: int = 3, **kwargs: Any) -> FasterRCNN:
    """The paper's VGG-16 Faster R-CNN (137M parameters at 20 classes).

    kwargs: `input_size` (600, the paper's shorter side; default anchors 128, 256 and 512 px scale with it),
    `roi_pool` ("pool": RoIPool, the paper's; "align": RoIAlign), `representation_size` (4096), `dropout` (0.5),
    `freeze_conv1_conv2` (False; the paper fine-tunes from conv3_1 up on ImageNet weights), and
    `FasterRCNNConfig` fields.
    """
    config, rest = _config(_VGG16_DEFAULTS, kwargs, input_size=kwargs.get("input_size", 600), reference_size=600)
    return _vgg16(num_classes, in_channels, config, **rest)


def _vgg16(num_classes: int, in_channels: int, config: FasterRCNNConfig, *, input_size: int = 600,
           roi_pool: str = "pool", representation_size: int = 4096, dropout: float = 0.5,
           freeze_conv1_conv2: bool = False) -> FasterRCNN:
    body = make_layers(cfgs["D"], batch_norm=False)[:_VGG16_CONV5_3]
    if in_channels != 3:
        body[0] = conv_like(body[0], in_channels=in_channels)
    for conv in body.modules():
        if isinstance(conv, nn.Conv2d):     # torchvision's VGG initialisation
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
    if freeze_conv1_conv2:
        body[:_VGG16_CONV3_1].requires_grad_(False)
    backbone = SingleLevelBackbone(body, out_channels=512, stride=16)
    pool = SingleLevelRoIPool(kind=roi_pool, output_size=7, stride=16)
    head = VGGBoxHead(512 * 7 * 7, representation_size, dropout=dropout)
    return FasterRCNN(backbone=backbone, roi_pool=pool, box_head=head, representation_size=representation_size,
                      num_classes=num_classes, config=config, input_size=input_size, in_channels=in_channels,
                      first_conv="backbone.body.0")


# Objects of about 16 to 160 px in 320 px images: two sizes per level over strides 8, 16, 32 and 64; a few
# hundred proposals and samples per image keep a CPU step short.
_SMALL_DEFAULTS = FasterRCNNConfig(
    anchor_sizes=((16, 24), (32, 48), (64, 96), (128, 192)), rpn_pre_nms_top_n_train=1000,
    rpn_pre_nms_top_n_test=500, rpn_post_nms_top_n_train=500, rpn_post_nms_top_n_test=300, roi_batch_size=128)


@register(task="detect", test_input=(3, 128, 128), paper=_PAPER, torchvision=None)
def faster_rcnn_small(*, num_classes: int, in_channels: int = 3, **kwargs: Any) -> FasterRCNN:
    """Faster R-CNN on `SmallBackbone` + a 64-channel FPN (2.0M parameters), trainable from scratch on a CPU.

    kwargs: `input_size` (320; default anchors scale with it), `width` (16, the backbone's first stage),
    `fpn_channels` (64), `representation_size` (256, the two fully connected layers), and `FasterRCNNConfig`
    fields.
    """
    config, rest = _config(_SMALL_DEFAULTS, kwargs, input_size=kwargs.get("input_size", 320), reference_size=320)
    return _small(num_classes, in_channels, config, **rest)


def _small(num_classes: int, in_channels: int, config: FasterRCNNConfig, *, input_size: int = 320, width: int = 16,
           fpn_channels: int = 64, representation_size: int = 256,
           detector: Callable[..., FasterRCNN] = FasterRCNN) -> FasterRCNN:
    body = SmallBackbone(in_channels=in_channels, width=width, out_strides=(8, 16, 32))
    backbone = PyramidBackbone(body, out_channels=fpn_channels)
    roi_pool = MultiScaleRoIAlign(featmap_names=["0", "1", "2"], output_size=7, sampling_ratio=2)
    head = TwoMLPHead(fpn_channels * 7 * 7, representation_size)
    return detector(backbone=backbone, roi_pool=roi_pool, box_head=head, representation_size=representation_size,
                    num_classes=num_classes, config=config, input_size=input_size, in_channels=in_channels,
                    first_conv=f"backbone.body.{body.first_conv}")
