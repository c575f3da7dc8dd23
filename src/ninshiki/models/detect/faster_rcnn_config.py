"""The settings of a Faster R-CNN (Ren et al., NeurIPS 2015): anchors, sampling, proposals, detection output.

One dataclass instead of torchvision's 29 constructor arguments. The defaults are torchvision's
`fasterrcnn_resnet50_fpn` (the Detectron settings, which keep the paper's where the paper states them);
each registered factory overrides what its architecture needs.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any


@dataclass
class FasterRCNNConfig:
    """Anchors, RPN and RoI-head sampling, proposal counts and the detection output of a Faster R-CNN.

    Counts and thresholds are per image. `*_train` / `*_test` values apply in training / evaluation mode.
    Lists (from YAML or JSON) are accepted wherever tuples are asked for.
    """

    # Anchors: one tuple of sizes (sqrt of the area, input pixels) per feature level, and aspect ratios
    # (height / width) shared by every level; each level has len(sizes) * len(ratios) anchors per location.
    anchor_sizes: tuple[tuple[float, ...], ...] = ((32,), (64,), (128,), (256,), (512,))
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    # RPN training: anchors with IoU >= fg are objects, < bg background, in between ignored; each anchor's
    # best ground-truth box is positive too (the paper's rule for objects no anchor reaches fg with).
    rpn_fg_iou: float = 0.7
    rpn_bg_iou: float = 0.3
    rpn_batch_size: int = 256                 # anchors sampled for the RPN loss
    rpn_positive_fraction: float = 0.5
    # Proposals: the best pre-NMS top-n anchors per level, NMS, then the best post-NMS top-n overall.
    rpn_pre_nms_top_n_train: int = 2000
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_train: int = 2000
    rpn_post_nms_top_n_test: int = 1000
    rpn_nms_iou: float = 0.7
    rpn_score_threshold: float = 0.0
    # RoI-head sampling: proposals (ground truth appended) with IoU >= fg take its class, < bg background.
    roi_fg_iou: float = 0.5
    roi_bg_iou: float = 0.5
    roi_batch_size: int = 512                 # proposals sampled for the RoI-head loss
    roi_positive_fraction: float = 0.25
    box_coder_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)   # (wx, wy, ww, wh)
    # Detection output (the model's attributes of the same names; callers may change them later).
    score_threshold: float = 0.05             # 0.001 for mAP, 0.25-0.5 for drawing
    nms_iou: float = 0.5
    max_detections: int = 100

    def __post_init__(self) -> None:
        self.anchor_sizes = tuple(tuple(float(s) for s in _sequence("anchor_sizes", level))
                                  for level in _sequence("anchor_sizes", self.anchor_sizes))
        self.aspect_ratios = tuple(float(r) for r in _sequence("aspect_ratios", self.aspect_ratios))
        self.box_coder_weights = tuple(float(w) for w in _sequence("box_coder_weights", self.box_coder_weights))
        problems = _problems(self)
        if problems:
            raise ValueError(f"FasterRCNNConfig: {'; '.join(problems)}")

    @property
    def anchors_per_location(self) -> int:
        """Anchors per feature-map location; the same on every level (the RPN head is shared)."""
        return len(self.anchor_sizes[0]) * len(self.aspect_ratios)


def _sequence(name: str, value: Any) -> tuple[Any, ...]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ValueError(f"FasterRCNNConfig: {name} must be a sequence, got {value!r}")
    return tuple(value)


def _problems(config: FasterRCNNConfig) -> list[str]:
    problems = []
    if not config.anchor_sizes or any(not level for level in config.anchor_sizes):
        problems.append(f"anchor_sizes needs at least one size per level, got {config.anchor_sizes}")
    elif len({len(level) for level in config.anchor_sizes}) != 1:
        problems.append(f"anchor_sizes must give every level the same number of sizes (one RPN head is shared "
                        f"by all levels), got {config.anchor_sizes}")
    if any(s <= 0 for level in config.anchor_sizes for s in level):
        problems.append(f"anchor_sizes must be positive, got {config.anchor_sizes}")
    if not config.aspect_ratios or any(r <= 0 for r in config.aspect_ratios):
        problems.append(f"aspect_ratios must be positive and non-empty, got {config.aspect_ratios}")
    if len(config.box_coder_weights) != 4 or any(w <= 0 for w in config.box_coder_weights):
        problems.append(f"box_coder_weights must be 4 positive numbers, got {config.box_coder_weights}")
    for low, high in (("rpn_bg_iou", "rpn_fg_iou"), ("roi_bg_iou", "roi_fg_iou")):
        lo, hi = getattr(config, low), getattr(config, high)
        if not 0.0 <= lo <= hi <= 1.0:
            problems.append(f"need 0 <= {low} <= {high} <= 1, got {low}={lo}, {high}={hi}")
    for name in ("rpn_positive_fraction", "roi_positive_fraction", "rpn_nms_iou", "nms_iou"):
        if not 0.0 <= getattr(config, name) <= 1.0:
            problems.append(f"{name} must be in [0, 1], got {getattr(config, name)}")
    for name in ("rpn_batch_size", "roi_batch_size", "rpn_pre_nms_top_n_train", "rpn_pre_nms_top_n_test",
                 "rpn_post_nms_top_n_train", "rpn_post_nms_top_n_test", "max_detections"):
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            problems.append(f"{name} must be a positive integer, got {value!r}")
    return problems


def split_config_kwargs(defaults: FasterRCNNConfig, kwargs: dict[str, Any]) -> tuple[FasterRCNNConfig, dict[str, Any]]:
    """(`defaults` with the config fields named in `kwargs` replaced, the remaining keyword arguments)."""
    names = {f.name for f in fields(FasterRCNNConfig)}
    overrides = {k: v for k, v in kwargs.items() if k in names}
    rest = {k: v for k, v in kwargs.items() if k not in names}
    return replace(defaults, **overrides), rest
