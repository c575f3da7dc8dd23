"""The trained attentional cascade, in OpenCV's own terms, so it can be written to and read from OpenCV's
cascade XML (`stageType BOOST`, `featureType HAAR`) without translation.

Semantics (OpenCV's `HaarEvaluator` and `predictOrdered`; the runtime module documents the details): for a
window of `window` (w, h) pixels at some position of an image (after the image is scaled so the window is
the cascade's size), a feature's value is `sum_i weight_i * pixel_sum(rect_i)` times the window's variance
normalisation factor. A stump adds `left` if value < threshold else `right` to its stage's sum; a stage
passes when its sum >= the stage threshold; a window is an object when it passes every stage.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class HaarFeature:
    rects: np.ndarray        # (R, 5) float64 rows [x, y, w, h, weight] in window pixels, R in 2..3
    tilted: bool = False     # 45-degree rotated rectangles (OpenCV's extended set; read, not trained)


@dataclass
class Stump:
    feature: int             # index into HaarCascade.features
    threshold: float         # compared with the normalised feature value
    left: float              # added when value < threshold
    right: float             # added otherwise


@dataclass
class Stage:
    stumps: list[Stump]
    threshold: float         # the stage passes when the sum of its stumps' outputs >= threshold


@dataclass
class HaarCascade:
    window: tuple[int, int]                      # (width, height) of the detection window
    features: list[HaarFeature] = field(default_factory=list)
    stages: list[Stage] = field(default_factory=list)
