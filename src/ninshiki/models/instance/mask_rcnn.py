"""Mask R-CNN: He, Gkioxari, Dollár and Girshick, "Mask R-CNN" (ICCV 2017, arXiv:1703.06870). The registered
variants, each its Faster R-CNN (models/detect/faster_rcnn.py) with the mask branch of `MaskRCNN`.

- `mask_rcnn_resnet50_fpn`: torchvision's `maskrcnn_resnet50_fpn`: the paper's ResNet-50-FPN head, four 3x3
  convolutions of 256 on 14x14 RoIAlign features, a 2x2 transposed convolution to 28x28 and per-class 1x1
  mask logits. The same parameter names, so its checkpoints load unchanged.
- `mask_rcnn_small`: `faster_rcnn_small` (SmallBackbone, 64-channel FPN) with a lighter mask head: two 3x3
  convolutions as wide as the FPN (64) instead of four of 256, about 1/30 of the paper head's multiply-adds
  per RoI, since on a CPU the mask head would otherwise cost more than the rest of the network.

Every factory takes its Faster R-CNN's keyword arguments (`FasterRCNNConfig` fields, `input_size`, ...) plus
`mask_layers` (the 3x3 convolutions' widths) and `mask_threshold` (0.5).
"""
from __future__ import annotations

from functools import partial
from typing import Any

from ninshiki.models.detect.faster_rcnn import _SMALL_DEFAULTS, _config, _resnet50_fpn, _small
from ninshiki.models.detect.faster_rcnn_config import FasterRCNNConfig
from ninshiki.models.instance.mask_rcnn_model import MaskRCNN
from ninshiki.registry import register

_PAPER = "He, Gkioxari, Dollár and Girshick, Mask R-CNN, ICCV 2017"
_PAPER_MASK_LAYERS = (256, 256, 256, 256)


def _mask_options(kwargs: dict[str, Any], *, mask_layers: tuple[int, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(MaskRCNN's own keyword arguments with defaults, the remaining ones for the Faster R-CNN builder)."""
    rest = dict(kwargs)
    options = {"mask_layers": tuple(rest.pop("mask_layers", mask_layers)),
               "mask_threshold": float(rest.pop("mask_threshold", 0.5))}
    if not 0.0 <= options["mask_threshold"] <= 1.0:
        raise ValueError(f"mask_threshold must be in [0, 1], got {options['mask_threshold']}")
    return options, rest


@register(task="instance", test_input=(3, 64, 64), paper=_PAPER, torchvision="maskrcnn_resnet50_fpn")
def mask_rcnn_resnet50_fpn(*, num_classes: int, in_channels: int = 3, **kwargs: Any) -> MaskRCNN:
    """ResNet-50-FPN Mask R-CNN as torchvision builds it (44.4M parameters at 90 classes).

    kwargs: those of `faster_rcnn_resnet50_fpn` (`input_size` 800, `trainable_backbone_layers` 5,
    `frozen_batchnorm` False, `FasterRCNNConfig` fields with torchvision's defaults), `mask_layers`
    ((256, 256, 256, 256)) and `mask_threshold` (0.5).
    """
    mask, kwargs = _mask_options(kwargs, mask_layers=_PAPER_MASK_LAYERS)
    config, rest = _config(FasterRCNNConfig(), kwargs, input_size=kwargs.get("input_size", 800), reference_size=800)
    return _resnet50_fpn(num_classes, in_channels, config, detector=partial(MaskRCNN, **mask), **rest)


@register(task="instance", test_input=(3, 128, 128), paper=_PAPER, torchvision=None)
def mask_rcnn_small(*, num_classes: int, in_channels: int = 3, **kwargs: Any) -> MaskRCNN:
    """Mask R-CNN on `faster_rcnn_small` (2.1M parameters), trainable from scratch on a CPU at 320 px.

    kwargs: those of `faster_rcnn_small` (`input_size` 320, `width` 16, `fpn_channels` 64,
    `representation_size` 256, `FasterRCNNConfig` fields), `mask_layers` (two of `fpn_channels`) and
    `mask_threshold` (0.5).
    """
    fpn_channels = int(kwargs.get("fpn_channels", 64))
    mask, kwargs = _mask_options(kwargs, mask_layers=(fpn_channels, fpn_channels))
    config, rest = _config(_SMALL_DEFAULTS, kwargs, input_size=kwargs.get("input_size", 320), reference_size=320)
    return _small(num_classes, in_channels, config, detector=partial(MaskRCNN, **mask), **rest)
