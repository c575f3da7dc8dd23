"""The model contracts of DESIGN.md as typing Protocols, for annotations and `isinstance` checks."""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from torch import Tensor

from ninshiki.structures import ClassifierOutput, Detections, FeatureInfo, SegmentationOutput

# A detection target: {"boxes": (N, 4) float xyxy pixels of the input, "labels": (N,) int64 in [0, K)}.
Target = dict[str, Tensor]


@runtime_checkable
class Backbone(Protocol):
    """A network that exposes multi-scale feature maps to task heads.

    `feature_info[i]` describes `forward_features(x)[i]`: its channels, its stride (input pixels per
    feature-map pixel) and the module that produces it. Heads read channels from it, never hard-code them.
    """

    feature_info: list[FeatureInfo]

    def forward_features(self, x: Tensor) -> list[Tensor]: ...


@runtime_checkable
class Classifier(Backbone, Protocol):
    """A backbone with a classification head.

    Calling it returns the logits (B, K), or a `ClassifierOutput` for networks with auxiliary heads; the
    type is the same in training and evaluation mode. `classifier_names` are the modules whose shapes
    depend on the number of classes, which `load_weights` re-initialises when the class count changes.
    """

    classifier_names: tuple[str, ...]

    def __call__(self, x: Tensor) -> Tensor | ClassifierOutput: ...


@runtime_checkable
class Detector(Protocol):
    """An object detector (DESIGN.md, contract 2).

    `forward(images, targets=None)` takes RGB float images in [0, 1], (B, 3, H, W), un-normalised (the model
    holds its own mean and std), and returns a raw output of ONE type in training and evaluation mode, so a
    single pass gives both the validation loss and the predictions. Two-stage models that sample proposals
    against the ground truth do so whenever `targets` are given. `loss(raw, targets)` returns named scalar
    losses with the total under "loss"; `postprocess(raw, sizes)` decodes, filters by `score_threshold`,
    runs NMS at `nms_iou` and keeps at most `max_detections` per image, boxes xyxy in input pixels clipped
    to `sizes[i] = (height, width)` (default: the input size). Those three are plain attributes that
    callers may change (0.001 for mAP, 0.25 for drawing). `input_size` is the side the model trains at.
    """

    num_classes: int
    input_size: int
    score_threshold: float
    nms_iou: float
    max_detections: int
    classifier_names: tuple[str, ...]

    def __call__(self, images: Tensor, targets: list[Target] | None = None) -> Any: ...

    def loss(self, raw: Any, targets: list[Target]) -> dict[str, Tensor]: ...

    def postprocess(self, raw: Any, sizes: list[tuple[int, int]] | None = None) -> list[Detections]: ...


@runtime_checkable
class Segmenter(Protocol):
    """A semantic segmenter: one class per pixel (DESIGN.md, contract 2).

    `forward(images, targets=None)` takes RGB float images in [0, 1], (B, 3, H, W) with H and W multiples of
    32, un-normalised (the model holds its own mean and std), and returns a `SegmentationOutput` whose logits
    are at the input resolution, in training and evaluation mode alike (auxiliary logits in training mode
    only). `targets` are (B, H, W) int64 class maps, `ignore_index` where unlabelled; segmenters ignore them
    in `forward` (the argument keeps the call the same as a detector's). `loss(raw, targets)` returns named
    scalar losses with the total under "loss"; `postprocess(raw, sizes)` returns one (h, w) int64 class
    map per image, the top-left `sizes[i] = (h, w)` of the input (the rest is padding; default: all of it).
    `num_classes` counts every class, background included; `input_size` is the side of training crops.
    """

    num_classes: int
    input_size: int
    ignore_index: int
    classifier_names: tuple[str, ...]

    def __call__(self, images: Tensor, targets: Tensor | None = None) -> SegmentationOutput: ...

    def loss(self, raw: SegmentationOutput, targets: Tensor) -> dict[str, Tensor]: ...

    def postprocess(self, raw: SegmentationOutput, sizes: list[tuple[int, int]] | None = None) -> list[Tensor]: ...
