"""SSD: Liu, Anguelov, Erhan, Szegedy, Reed, Fu and Berg, "SSD: Single Shot MultiBox Detector" (ECCV 2016,
arXiv:1512.02325).

A convolutional network predicts, for every default box of several feature maps (section 2.1: a few aspect
ratios per location, scales growing with the map's stride), K + 1 class scores (background first) and four
offsets from the default box. Built on torchvision's components (`SSDFeatureExtractorVGG`, `DefaultBoxGenerator`,
`SSDHead` / `SSDLiteHead`, `BoxCoder`, `Matcher`) behind ninshiki's detector contract: `forward` returns one
`SSDOutput` in training and evaluation, `loss` is `MultiBoxLoss` (ssd_loss.py), `postprocess` is the paper's.

- `ssd300_vgg16`: the paper's SSD300 on VGG-16, torchvision's layout (its state dicts load unchanged) and
  input normalisation (VGG's Caffe mean, 0-255 range); 8732 default boxes at 300 px.
- `ssd_lite`: `SmallBackbone` plus two stride-2 extra maps and depthwise-separable heads (torchvision's
  SSDlite head, MobileNetV2 paper section 6.2); trains from scratch on a CPU; 320 px.

Postprocessing (section 3, "Inference"): softmax, the `topk_candidates` (400) best boxes per class as in the
authors' Caffe model, scores above `score_threshold` (0.01), per-class NMS at `nms_iou` (0.45) and the
`max_detections` best (100; the paper keeps 200, set it for COCO-style evaluation).
"""
from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.ssd import SSDHead
from torchvision.models.detection.ssdlite import SSDLiteHead

from ninshiki.models.detect.common import IMAGENET_MEAN, IMAGENET_STD, ImageNormalizer, select_detections
from ninshiki.models.detect.ssd_features import LiteFeatures, VGGFeatures
from ninshiki.models.detect.ssd_loss import MultiBoxLoss, Target
from ninshiki.registry import register
from ninshiki.structures import Detections

_PAPER = "Liu et al., SSD: Single Shot MultiBox Detector, ECCV 2016"
_CACHED_SIZES = 8   # default-box sets kept per model: one per (input size, device) in use


class SSDOutput(NamedTuple):
    """SSD's raw output, the same in training and evaluation mode."""
    cls_logits: Tensor            # (B, A, K + 1) class scores, background (0) first
    box_regression: Tensor        # (B, A, 4) offsets (dx, dy, dw, dh) from each default box, / (.1, .1, .2, .2)
    anchors: Tensor               # (A, 4) default boxes, xyxy in input pixels
    image_size: tuple[int, int]   # (height, width) of the input, where boxes are clipped by default


class SSD(nn.Module):
    """A single-shot detector from its parts (see the module docstring for the factories).

    Args:
        backbone: Has `forward_features(x) -> list of maps` and `feature_info`; one default-box set per map.
        head: Maps the feature list to {"cls_logits": (B, A, K + 1), "bbox_regression": (B, A, 4)}.
        box_generator: Default boxes per map, in the head's order (torchvision's `DefaultBoxGenerator`).
        criterion: The training loss.
        normalizer: Maps images in [0, 1] to the backbone's input range.
        num_classes: Object classes K, without the background.
        input_size: The side the model trains at.
        score_threshold, nms_iou, max_detections: Postprocessing, see the module docstring.
        topk_candidates: Best boxes per class kept before NMS.

    Shape:
        - Input: (B, C, H, W) in [0, 1].
        - Output: `SSDOutput` with A default boxes for the input's size.
    """

    def __init__(self, *, backbone: nn.Module, head: nn.Module, box_generator: DefaultBoxGenerator,
                 criterion: MultiBoxLoss, normalizer: ImageNormalizer, num_classes: int, input_size: int,
                 score_threshold: float = 0.01, nms_iou: float = 0.45, max_detections: int = 100,
                 topk_candidates: int = 400) -> None:
        super().__init__()
        if len(backbone.feature_info) != len(box_generator.aspect_ratios):
            raise ValueError(f"{len(backbone.feature_info)} feature maps but default boxes for "
                             f"{len(box_generator.aspect_ratios)} (aspect_ratios has one list per map)")
        self.normalizer = normalizer
        self.backbone = backbone
        self.head = head
        self.box_generator = box_generator
        self.criterion = criterion
        self.box_coder = det_utils.BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
        self.num_classes, self.input_size = num_classes, input_size
        self.score_threshold, self.nms_iou, self.max_detections = score_threshold, nms_iou, max_detections
        self.topk_candidates = topk_candidates
        self.first_conv = f"backbone.{backbone.first_conv}"
        self.classifier_names = _last_convs(head.classification_head.module_list, "head.classification_head.module_list")
        self._default_boxes: dict[tuple[Any, ...], Tensor] = {}

    def forward(self, images: Tensor, targets: list[Target] | None = None) -> SSDOutput:
        """Class scores and box offsets for every default box; `targets` are not needed (single stage)."""
        if images.dim() != 4:
            raise ValueError(f"SSD expects images (B, C, H, W), got shape {tuple(images.shape)}")
        features = self.backbone.forward_features(self.normalizer(images))
        out = self.head(features)
        size = (int(images.shape[-2]), int(images.shape[-1]))
        return SSDOutput(out["cls_logits"], out["bbox_regression"], self.default_boxes(size, features), size)

    def default_boxes(self, size: tuple[int, int], features: list[Tensor]) -> Tensor:
        """The default boxes for an input of `size` (height, width), cached per size and device.

        Shape:
            - Output: (A, 4) xyxy in input pixels, location-major per map as the head's outputs.
        """
        grids = tuple(tuple(f.shape[-2:]) for f in features)
        key = (size, grids, features[0].device)
        boxes = self._default_boxes.get(key)
        if boxes is None:
            # The generator reads only shapes, dtype and device from its arguments.
            shapes = [torch.empty(0, 0, *grid, device=features[0].device) for grid in grids]
            boxes = self.box_generator(ImageList(torch.empty(0, 0, *size), [size]), shapes)[0]   # (A, 4)
            if len(self._default_boxes) >= _CACHED_SIZES:
                self._default_boxes.pop(next(iter(self._default_boxes)))
            self._default_boxes[key] = boxes
        return boxes

    def loss(self, raw: SSDOutput, targets: list[Target]) -> dict[str, Tensor]:
        """`MultiBoxLoss`: "loss", "classification", "box_regression"; targets' labels in [0, K)."""
        return self.criterion(raw.cls_logits, raw.box_regression, raw.anchors, targets)

    @torch.no_grad()
    def postprocess(self, raw: SSDOutput, sizes: list[tuple[int, int]] | None = None) -> list[Detections]:
        """Detections per image, boxes xyxy in input pixels clipped to `sizes[i]` (default: the input's)."""
        batch, num_boxes = raw.cls_logits.shape[:2]
        sizes = sizes if sizes is not None else [raw.image_size] * batch
        if len(sizes) != batch:
            raise ValueError(f"postprocess: {batch} images but {len(sizes)} sizes")
        scores = raw.cls_logits.float().softmax(dim=-1)[..., 1:]                  # (B, A, K) without background
        anchors = raw.anchors.float().repeat(batch, 1)                            # (B * A, 4)
        boxes = self.box_coder.decode_single(raw.box_regression.float().reshape(-1, 4), anchors)
        boxes = boxes.view(batch, num_boxes, 4)                                   # (B, A, 4) xyxy
        k = min(self.topk_candidates, num_boxes)
        results = []
        for image_boxes, image_scores, size in zip(boxes, scores, sizes):
            top_scores, top = image_scores.topk(k, dim=0)                         # (k, K) best boxes per class
            results.append(select_detections(image_boxes[top], top_scores, score_threshold=self.score_threshold,
                                             nms_iou=self.nms_iou, max_detections=self.max_detections, size=size))
        return results


def _last_convs(module_list: nn.ModuleList, prefix: str) -> tuple[str, ...]:
    # The class-count-dependent layer of each per-map predictor: the last convolution in it.
    names = []
    for index, predictor in enumerate(module_list):
        convs = [name for name, m in predictor.named_modules() if isinstance(m, nn.Conv2d)]
        names.append(f"{prefix}.{index}" + (f".{convs[-1]}" if convs[-1] else ""))
    return tuple(names)


_BOX_KEYS = ("aspect_ratios", "scales", "steps")
_LOSS_KEYS = ("iou_threshold", "neg_pos_ratio", "min_negatives", "alpha")
_MODEL_KEYS = ("input_size", "score_threshold", "nms_iou", "max_detections", "topk_candidates")


def _pop(kwargs: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {key: kwargs.pop(key) for key in keys if key in kwargs}


def _channel_stats(values: tuple[float, ...], in_channels: int) -> tuple[float, ...]:
    # RGB statistics for RGB input; their average on every channel otherwise (gray, multispectral).
    return values if in_channels == len(values) else (sum(values) / len(values),) * in_channels


HeadFactory = Callable[[list[int], list[int], int], nn.Module]   # (channels, boxes per location, classes + 1)


def _assemble(name: str, backbone: nn.Module, head_factory: HeadFactory, boxes: dict[str, Any], mean: tuple[float, ...],
              std: tuple[float, ...], num_classes: int, in_channels: int, input_size: int,
              kwargs: dict[str, Any]) -> SSD:
    """An `SSD` with the factory's defaults overridden by the user's keyword arguments."""
    boxes |= _pop(kwargs, _BOX_KEYS)
    criterion = MultiBoxLoss(**_pop(kwargs, _LOSS_KEYS))
    options = {"input_size": input_size} | _pop(kwargs, _MODEL_KEYS)
    if kwargs:
        raise TypeError(f"{name}: unexpected keyword arguments {sorted(kwargs)}; known: "
                        f"{sorted(_BOX_KEYS + _LOSS_KEYS + _MODEL_KEYS)} and the backbone's")
    generator = DefaultBoxGenerator(**boxes)
    channels = [info.channels for info in backbone.feature_info]
    head = head_factory(channels, generator.num_anchors_per_location(), num_classes + 1)
    normalizer = ImageNormalizer(_channel_stats(mean, in_channels), _channel_stats(std, in_channels))
    return SSD(backbone=backbone, head=head, box_generator=generator, criterion=criterion, normalizer=normalizer,
               num_classes=num_classes, **options)


@register(task="detect", test_input=(3, 268, 268), paper=_PAPER, torchvision="ssd300_vgg16")  # smallest input
def ssd300_vgg16(*, num_classes: int, in_channels: int = 3, **kwargs: Any) -> SSD:
    """SSD300 on VGG-16 (26M parameters at 20 classes), torchvision's layout and default boxes.

    kwargs: default boxes (`aspect_ratios`, `scales`, `steps`), loss (`iou_threshold`, `neg_pos_ratio`,
    `min_negatives`, `alpha`), and `input_size`, `score_threshold`, `nms_iou`, `max_detections`,
    `topk_candidates`. Inputs at least 268 px. No weights are loaded: torchvision's `ssd300_vgg16` checkpoints load
    with `load_weights` (other class counts re-initialise the classification head).
    """
    boxes = {"aspect_ratios": [[2], [2, 3], [2, 3], [2, 3], [2], [2]],
             "scales": [0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05], "steps": [8, 16, 32, 64, 100, 300]}
    # torchvision's VGG-16 weights for SSD are Caffe's: BGR-mean-subtracted 0-255 input (in RGB order here).
    mean, std = (0.48235, 0.45882, 0.40784), (1.0 / 255.0,) * 3
    return _assemble("ssd300_vgg16", VGGFeatures(in_channels=in_channels), SSDHead, boxes, mean, std,
                     num_classes, in_channels, 300, kwargs)


def lite_scales(num_maps: int, min_ratio: float = 0.15, max_ratio: float = 0.9) -> list[float]:
    """Default-box scales in the manner of the authors' COCO models (SSD300's are 0.07, 0.15, 0.33, ..., 0.87,
    1.05): s_min / 2 on the first map, s_min to s_max evenly on the others, then 1 for the last map's extra
    box of scale sqrt(s_k * s_k+1). `num_maps` + 1 values."""
    steps = max(num_maps - 2, 1)
    return [min_ratio / 2] + [min_ratio + (max_ratio - min_ratio) * k / steps for k in range(num_maps - 1)] + [1.0]


@register(task="detect", test_input=(3, 128, 128), paper=_PAPER)
def ssd_lite(*, num_classes: int, in_channels: int = 3, **kwargs: Any) -> SSD:
    """A light SSD on `SmallBackbone` (strides 8 to 128; about 1M parameters), 320 px, trains on a CPU.

    kwargs: backbone `width` (16) and `extra` (channels of the extra stride-2 maps, (128, 128)); default
    boxes (`aspect_ratios`, default [[2], [2, 3], ..., [2]]; `scales`, default `lite_scales` of the map count
    and `min_ratio` / `max_ratio` (0.15, 0.9); `steps`, default the map grid); and the loss and
    postprocessing options of `ssd300_vgg16`.
    """
    features = LiteFeatures(in_channels=in_channels, **_pop(kwargs, ("width", "extra")))
    maps = len(features.feature_info)
    boxes: dict[str, Any] = {"aspect_ratios": [[2]] + [[2, 3]] * (maps - 2) + [[2]],
                             "scales": lite_scales(maps, **_pop(kwargs, ("min_ratio", "max_ratio")))}
    norm = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)   # torchvision's SSDlite head normalisation
    return _assemble("ssd_lite", features, partial(SSDLiteHead, norm_layer=norm), boxes, IMAGENET_MEAN,
                     IMAGENET_STD, num_classes, in_channels, 320, kwargs)

