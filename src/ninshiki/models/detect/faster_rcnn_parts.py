"""Building blocks of the Faster R-CNN variants (Ren et al., NeurIPS 2015) around torchvision's modules.

torchvision's `RegionProposalNetwork` and `RoIHeads` are built here as containers of their parts (head,
anchor generator, box coder, matcher, sampler, RoI pooling, box head, predictor), so parameter names are
torchvision's and its checkpoints load unchanged; `faster_rcnn_model.FasterRCNN` calls the parts itself.
"""
from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.ops import FeaturePyramidNetwork, roi_align, roi_pool
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from ninshiki.models.detect.faster_rcnn_config import FasterRCNNConfig


class PyramidBackbone(nn.Module):
    """A backbone with the backbone contract (`forward_features`, `feature_info`) under an FPN.

    Lin et al., "Feature Pyramid Networks for Object Detection" (CVPR 2017): lateral 1x1 and output 3x3
    convolutions of `out_channels`, top-down nearest upsampling, and a max-pooled extra level ("pool").

    Shape:
        - Input: (B, C, H, W).
        - Output: {"0": (B, out_channels, H/s0, W/s0), ..., "pool": (B, out_channels, H/2sN, W/2sN)} for the
          strides s0..sN of `body.feature_info`.
    """

    def __init__(self, body: nn.Module, *, out_channels: int) -> None:
        super().__init__()
        self.body = body
        self.fpn = FeaturePyramidNetwork([info.channels for info in body.feature_info], out_channels,
                                         extra_blocks=LastLevelMaxPool())
        self.out_channels = out_channels
        self.strides = [info.stride for info in body.feature_info] + [2 * body.feature_info[-1].stride]

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        features = self.body.forward_features(x)
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(features)))


class SingleLevelBackbone(nn.Module):
    """A plain convolutional trunk whose last output is the one feature map (the paper's VGG-16 conv5_3).

    Shape:
        - Input: (B, C, H, W).
        - Output: {"0": (B, out_channels, H/stride, W/stride)}.
    """

    def __init__(self, body: nn.Module, *, out_channels: int, stride: int) -> None:
        super().__init__()
        self.body = body
        self.out_channels = out_channels
        self.strides = [stride]

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        return OrderedDict([("0", self.body(x))])


class SingleLevelRoIPool(nn.Module):
    """RoI pooling of one feature map with `MultiScaleRoIAlign`'s call signature.

    "pool" is Fast R-CNN's RoI max pooling (Girshick, ICCV 2015; coordinates rounded to the feature grid),
    what Faster R-CNN uses; "align" is Mask R-CNN's RoIAlign (He et al., ICCV 2017), bilinear sampling
    without rounding, here with the half-pixel correction (`aligned=True`).

    Shape:
        - features["0"]: (B, C, H/stride, W/stride).
        - boxes: B tensors (R_i, 4) xyxy in input pixels.
        - Output: (sum R_i, C, output_size, output_size).
    """

    def __init__(self, *, kind: str, output_size: int, stride: int, sampling_ratio: int = 2) -> None:
        super().__init__()
        if kind not in ("pool", "align"):
            raise ValueError(f"roi_pool must be 'pool' (RoIPool, the paper's) or 'align' (RoIAlign), got {kind!r}")
        self.kind, self.output_size, self.scale, self.sampling_ratio = kind, output_size, 1.0 / stride, sampling_ratio

    def forward(self, features: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]) -> Tensor:
        x = features["0"]
        boxes = [b.to(x.dtype) for b in boxes]
        if self.kind == "pool":
            return roi_pool(x, boxes, self.output_size, self.scale)
        return roi_align(x, boxes, self.output_size, self.scale, self.sampling_ratio, aligned=True)


class VGGBoxHead(nn.Module):
    """fc6 and fc7 of VGG-16 on the pooled RoI, each with ReLU and dropout, as in Fast / Faster R-CNN.

    Shapes are VGG-16's classifier.0 and classifier.3, so ImageNet weights can initialise them (the paper does).

    Shape:
        - Input: (R, C, P, P) pooled features.
        - Output: (R, representation_size).
    """

    def __init__(self, in_features: int, representation_size: int, *, dropout: float = 0.5) -> None:
        super().__init__()
        self.fc6 = nn.Linear(in_features, representation_size)
        self.fc7 = nn.Linear(representation_size, representation_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = self.dropout(nn.functional.relu(self.fc6(x.flatten(1))))   # (R, D)
        return self.dropout(nn.functional.relu(self.fc7(x)))           # (R, D)


def build_rpn(config: FasterRCNNConfig, *, in_channels: int, num_levels: int) -> RegionProposalNetwork:
    """torchvision's RPN (3x3 conv, then 1x1 objectness and box-delta convolutions) for `config`."""
    if len(config.anchor_sizes) != num_levels:
        raise ValueError(f"anchor_sizes gives {len(config.anchor_sizes)} levels but the backbone has {num_levels} "
                         f"feature maps: give one tuple of sizes per level, got {config.anchor_sizes}")
    anchors = AnchorGenerator(config.anchor_sizes, (config.aspect_ratios,) * num_levels)
    head = RPNHead(in_channels, config.anchors_per_location)
    return RegionProposalNetwork(
        anchors, head, config.rpn_fg_iou, config.rpn_bg_iou, config.rpn_batch_size, config.rpn_positive_fraction,
        {"training": config.rpn_pre_nms_top_n_train, "testing": config.rpn_pre_nms_top_n_test},
        {"training": config.rpn_post_nms_top_n_train, "testing": config.rpn_post_nms_top_n_test},
        config.rpn_nms_iou, score_thresh=config.rpn_score_threshold)


def build_roi_heads(config: FasterRCNNConfig, *, roi_pool: nn.Module, box_head: nn.Module, representation_size: int,
                    num_classes: int) -> RoIHeads:
    """torchvision's RoI heads with a (num_classes + 1)-way predictor, class 0 the background."""
    predictor = FastRCNNPredictor(representation_size, num_classes + 1)
    # torchvision's score / NMS / top-k settings are not read: postprocess uses the model's own attributes.
    return RoIHeads(roi_pool, box_head, predictor, config.roi_fg_iou, config.roi_bg_iou, config.roi_batch_size,
                    config.roi_positive_fraction, config.box_coder_weights, config.score_threshold, config.nms_iou,
                    config.max_detections)
