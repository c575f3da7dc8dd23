"""YOLO v1: Redmon, Divvala, Girshick and Farhadi, "You Only Look Once: Unified, Real-Time Object Detection"
(CVPR 2016).

One network maps the whole image to an S x S grid; each cell predicts B boxes with a confidence each and
one set of C class probabilities (`yolov1_loss` documents the layout, the loss and the decoding).

- `yolov1` is the paper's network (Figure 3): 24 convolutions in the Darknet style (1x1 reductions between
  3x3 convolutions), leaky ReLU 0.1, a 448 px input giving a 7 x 7 x 1024 map, then two fully connected
  layers, 4096 and S * S * (5B + C), with dropout 0.5 after the first; S = 7, B = 2; 271M parameters with
  the 20 VOC classes.
- `yolov1_small` keeps the head semantics and the loss on the CPU-trainable `SmallBackbone` with a
  convolutional head instead of the 200M-parameter fully connected layer; S = 10 at its 320 px input.

Batch normalisation follows each convolution by default: the paper pretrained its first 20 layers on
ImageNet for a week; without that pretraining, batch norm (which YOLO v2 added, for +2% mAP) is the usual
way to train the deep plain network from scratch. `yolov1(batch_norm=False)` is the 2016 network exactly.
Deviations: an adaptive average pool to the 7 x 7 map that 448 px inputs give (the identity there) lets
other input sizes through, as torchvision's VGG does; outputs are clamped for decoding (see yolov1_loss).
"""
from __future__ import annotations

from typing import Any, NamedTuple

import torch.nn.functional as F
from torch import Tensor, nn

from ninshiki.models.backbones.small import SmallBackbone
from ninshiki.models.detect.common import IMAGENET_MEAN, IMAGENET_STD, ImageNormalizer, select_detections
from ninshiki.models.detect.yolov1_loss import ConfidenceTarget, Target, YoloV1Loss, decode_predictions
from ninshiki.registry import register
from ninshiki.structures import Detections

_PAPER = "Redmon et al., You Only Look Once: Unified, Real-Time Object Detection, CVPR 2016"

# Figure 3: (filters, kernel, stride) per convolution, "M" a 2x2/2 max-pool; 24 convolutions, stride 64.
_DARKNET24: tuple[tuple[int, int, int] | str, ...] = (
    (64, 7, 2), "M",
    (192, 3, 1), "M",
    (128, 1, 1), (256, 3, 1), (256, 1, 1), (512, 3, 1), "M",
    *((256, 1, 1), (512, 3, 1)) * 4, (512, 1, 1), (1024, 3, 1), "M",
    *((512, 1, 1), (1024, 3, 1)) * 2, (1024, 3, 1), (1024, 3, 2),
    (1024, 3, 1), (1024, 3, 1),
)


class YoloV1Output(NamedTuple):
    """Raw output of the YOLO v1 models, the same in training and evaluation."""
    grid: Tensor                  # (B, S, S, 5 * boxes_per_cell + C), layout in yolov1_loss
    image_size: tuple[int, int]   # (height, width) of the input the grid was predicted from


def conv_leaky(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
               batch_norm: bool = True) -> list[nn.Module]:
    """Convolution (padding kernel // 2), optional batch norm, leaky ReLU 0.1 (the paper's activation)."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2,
                                         bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_channels))
    layers.append(nn.LeakyReLU(0.1, inplace=True))
    return layers


class YoloV1Detector(nn.Module):
    """What both YOLO v1 networks share: normalisation, the raw output, the loss and the postprocessing.

    Subclasses build the layers and implement `predict_grid`.
    """

    classifier_names: tuple[str, ...]
    first_conv: str

    def __init__(self, *, num_classes: int, in_channels: int, grid_size: int, boxes_per_cell: int,
                 input_size: int, criterion: YoloV1Loss, score_threshold: float, nms_iou: float,
                 max_detections: int) -> None:
        super().__init__()
        if num_classes < 1 or grid_size < 1 or boxes_per_cell < 1:
            raise ValueError(f"num_classes, grid_size and boxes_per_cell must be >= 1, got {num_classes}, "
                             f"{grid_size}, {boxes_per_cell}")
        self.num_classes, self.in_channels = num_classes, in_channels
        self.grid_size, self.boxes_per_cell, self.input_size = grid_size, boxes_per_cell, input_size
        self.criterion = criterion
        self.score_threshold, self.nms_iou, self.max_detections = score_threshold, nms_iou, max_detections
        # Gray or multispectral inputs: every channel gets ImageNet's mean statistics.
        mean, std = ((IMAGENET_MEAN, IMAGENET_STD) if in_channels == 3 else
                     ((sum(IMAGENET_MEAN) / 3,) * in_channels, (sum(IMAGENET_STD) / 3,) * in_channels))
        self.normalize = ImageNormalizer(mean, std)

    @property
    def grid_channels(self) -> int:
        return 5 * self.boxes_per_cell + self.num_classes

    def predict_grid(self, x: Tensor) -> Tensor:
        """(B, C, H, W) normalised images -> (B, S, S, 5 * boxes_per_cell + num_classes) raw grid."""
        raise NotImplementedError

    def forward(self, images: Tensor, targets: list[Target] | None = None) -> YoloV1Output:
        """The raw grid; `targets` are accepted for the detector contract and unused (one stage).

        Shape:
            - images: (B, in_channels, H, W) in [0, 1].
            - Output grid: (B, S, S, 5 * boxes_per_cell + num_classes).
        """
        if images.dim() != 4 or images.shape[1] != self.in_channels:
            raise ValueError(f"expected images (B, {self.in_channels}, H, W), got {tuple(images.shape)}")
        return YoloV1Output(self.predict_grid(self.normalize(images)), (images.shape[-2], images.shape[-1]))

    def loss(self, raw: YoloV1Output, targets: list[Target]) -> dict[str, Tensor]:
        """The paper's sum-squared error; targets' boxes are xyxy in pixels of the input."""
        return self.criterion(raw.grid, targets, boxes_per_cell=self.boxes_per_cell, image_size=raw.image_size)

    def postprocess(self, raw: YoloV1Output, sizes: list[tuple[int, int]] | None = None) -> list[Detections]:
        """Detections per image: class-specific confidence Pr(class | object) * confidence, then per-class NMS.

        Boxes are xyxy in input pixels, clipped to `sizes[i]` = (height, width), by default the input size.
        """
        grid = raw.grid.detach()
        sizes = sizes if sizes is not None else [raw.image_size] * grid.shape[0]
        if len(sizes) != grid.shape[0]:
            raise ValueError(f"{len(sizes)} sizes for {grid.shape[0]} images")
        boxes, scores = decode_predictions(grid, boxes_per_cell=self.boxes_per_cell, image_size=raw.image_size)
        return [select_detections(b, s, score_threshold=self.score_threshold, nms_iou=self.nms_iou,
                                  max_detections=self.max_detections, size=size)
                for b, s, size in zip(boxes, scores, sizes)]


class YoloV1(YoloV1Detector):
    """The paper's network: 24 convolutions (Figure 3), then fully connected 4096 and S * S * (5B + C).

    Shape:
        - Input: (B, in_channels, H, W); 448 in the paper, any size through the adaptive pool.
        - Output: `YoloV1Output` with grid (B, S, S, 5B + C).
    """

    classifier_names = ("classifier.3",)
    first_conv = "features.0"

    def __init__(self, *, num_classes: int = 20, in_channels: int = 3, grid_size: int = 7, boxes_per_cell: int = 2,
                 input_size: int = 448, batch_norm: bool = True, dropout: float = 0.5,
                 criterion: YoloV1Loss | None = None, score_threshold: float = 0.001, nms_iou: float = 0.5,
                 max_detections: int = 100) -> None:
        super().__init__(num_classes=num_classes, in_channels=in_channels, grid_size=grid_size,
                         boxes_per_cell=boxes_per_cell, input_size=input_size, criterion=criterion or YoloV1Loss(),
                         score_threshold=score_threshold, nms_iou=nms_iou, max_detections=max_detections)
        layers: list[nn.Module] = []
        channels = in_channels
        for spec in _DARKNET24:
            if isinstance(spec, str):                                      # "M"
                layers.append(nn.MaxPool2d(2, 2))
            else:
                filters, kernel, stride = spec
                layers += conv_leaky(channels, filters, kernel, stride, batch_norm)
                channels = filters
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(7)
        self.classifier = nn.Sequential(
            nn.Linear(channels * 7 * 7, 4096),
            nn.LeakyReLU(0.1, inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, grid_size * grid_size * self.grid_channels),   # linear, as in the paper
        )
        _init_prediction(self.classifier[3])

    def predict_grid(self, x: Tensor) -> Tensor:
        x = self.avgpool(self.features(x))                                 # (B, 1024, 7, 7)
        s = self.grid_size
        return self.classifier(x.flatten(1)).view(-1, s, s, self.grid_channels)   # (B, S, S, 5B + C)


class YoloV1Small(YoloV1Detector):
    """YOLO v1's grid, boxes and loss on `SmallBackbone` with a convolutional head.

    The head reads the backbone map of the largest stride (8, 16 or 32) that still has at least S cells
    across `input_size`, runs two 3x3 convolutions (batch norm, leaky ReLU 0.1), average-pools to S x S when
    the sizes differ, and predicts each cell's 5B + C values with a linear 1x1 convolution.

    Shape:
        - Input: (B, in_channels, H, W), H and W multiples of 32 best.
        - Output: `YoloV1Output` with grid (B, S, S, 5B + C).
    """

    classifier_names = ("predict",)
    first_conv = "backbone.stages.0.0.0"

    def __init__(self, *, num_classes: int = 20, in_channels: int = 3, grid_size: int | None = None,
                 boxes_per_cell: int = 2, input_size: int = 320, width: int = 16,
                 criterion: YoloV1Loss | None = None, score_threshold: float = 0.001, nms_iou: float = 0.5,
                 max_detections: int = 100) -> None:
        grid_size = grid_size or max(input_size // 32, 1)
        super().__init__(num_classes=num_classes, in_channels=in_channels, grid_size=grid_size,
                         boxes_per_cell=boxes_per_cell, input_size=input_size, criterion=criterion or YoloV1Loss(),
                         score_threshold=score_threshold, nms_iou=nms_iou, max_detections=max_detections)
        stride = next((s for s in (32, 16) if input_size // s >= grid_size), 8)
        self.backbone = SmallBackbone(in_channels=in_channels, width=width, out_strides=(stride,))
        channels = self.backbone.feature_info[0].channels
        self.neck = nn.Sequential(*conv_leaky(channels, channels, 3), *conv_leaky(channels, channels, 3))
        self.predict = nn.Conv2d(channels, self.grid_channels, 1)
        _init_prediction(self.predict)

    def predict_grid(self, x: Tensor) -> Tensor:
        x = self.neck(self.backbone.forward_features(x)[0])              # (B, channels, H / stride, W / stride)
        s = self.grid_size
        if x.shape[-2:] != (s, s):
            x = F.adaptive_avg_pool2d(x, s)                                # (B, channels, S, S)
        return self.predict(x).permute(0, 2, 3, 1)                         # (B, S, S, 5B + C)


def _init_prediction(layer: nn.Linear | nn.Conv2d) -> None:
    # Near-zero initial predictions: confidences start at "no object", so the many empty cells' noobj
    # term does not dominate the first steps.
    nn.init.normal_(layer.weight, std=0.01)
    nn.init.zeros_(layer.bias)


def _criterion(kwargs: dict[str, Any]) -> YoloV1Loss:
    # The loss weights travel flat through the factories; pop them into the criterion.
    names = ("lambda_coord", "lambda_noobj", "confidence_target")
    return YoloV1Loss(**{name: kwargs.pop(name) for name in names if name in kwargs})


@register(task="detect", test_input=(3, 64, 64), paper=_PAPER)
def yolov1(*, num_classes: int, in_channels: int = 3, **kwargs: Any) -> YoloV1:
    """YOLO v1 as in the paper (448 px, S = 7, B = 2). kwargs: `grid_size`, `boxes_per_cell`, `input_size`,
    `batch_norm`, `dropout`, `lambda_coord`, `lambda_noobj`, `confidence_target` ("iou" or "one"),
    `score_threshold`, `nms_iou`, `max_detections`."""
    criterion = _criterion(kwargs)
    return YoloV1(num_classes=num_classes, in_channels=in_channels, criterion=criterion, **kwargs)


@register(task="detect", test_input=(3, 128, 128), paper=_PAPER)
def yolov1_small(*, num_classes: int, in_channels: int = 3, **kwargs: Any) -> YoloV1Small:
    """YOLO v1's head and loss on the small CPU backbone (320 px, S = 10, B = 2). kwargs: `grid_size`,
    `boxes_per_cell`, `input_size`, `width`, `lambda_coord`, `lambda_noobj`, `confidence_target`,
    `score_threshold`, `nms_iou`, `max_detections`."""
    criterion = _criterion(kwargs)
    return YoloV1Small(num_classes=num_classes, in_channels=in_channels, criterion=criterion, **kwargs)


__all__ = ["ConfidenceTarget", "YoloV1", "YoloV1Detector", "YoloV1Loss", "YoloV1Output", "YoloV1Small",
           "yolov1", "yolov1_small"]
