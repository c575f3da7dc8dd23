"""Test-time augmentation of a semantic segmenter: class probabilities averaged over mirrored and rescaled
copies of the input, the multi-scale and flip testing of PSPNet (Zhao et al., CVPR 2017, section 5) and
DeepLab.

Each copy is the batch scaled by s (bilinear, antialiased when shrinking), mirrored or not, zero-padded at
the bottom and right to a multiple of 32 (the segmenters' deepest stride); its logits are cropped to the
scaled size, mirrored back, resized to the input's size and turned into probabilities. The output logits
are the log of the mean probability, so their arg-max is the averaged vote and a CRF-as-RNN on top reads
them as unaries (`with_test_time_augmentation` puts the averaging under the CRF, which then runs once).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor

from ninshiki.data.segmentation.transforms import MULTIPLE  # what the loaders pad batches to
from ninshiki.models.segment.common import SemanticSegmenter
from ninshiki.structures import SegmentationOutput

DEFAULT_SCALES = (0.75, 1.0, 1.25)


class TestTimeAugmented(SemanticSegmenter):
    """`base` run on every (scale, mirror) copy of the input, probabilities averaged.

    Args:
        base: Any semantic segmenter (`Segmenter` contract).
        scales: Factors applied to the input; 1 is the input as given.
        flip: Also run each scale mirrored left-right.

    Shape:
        - images: (B, 3, H, W) in [0, 1]. Output logits: (B, K, H, W), log of the mean probability.
    """

    __test__ = False   # not a pytest class, whatever its name says

    def __init__(self, base: SemanticSegmenter, *, scales: Sequence[float] = DEFAULT_SCALES,
                 flip: bool = True) -> None:
        super().__init__(num_classes=base.num_classes, input_size=base.input_size, ignore_index=base.ignore_index,
                         aux_weight=getattr(base, "aux_weight", 0.4))
        if not scales or min(scales) <= 0:
            raise ValueError(f"scales must be positive factors, got {tuple(scales)}")
        self.base, self.scales, self.flip = base, tuple(float(s) for s in scales), bool(flip)
        self.classifier_names = tuple(f"base.{name}" for name in getattr(base, "classifier_names", ()))

    def forward(self, images: Tensor, targets: Tensor | None = None) -> SegmentationOutput:
        size = (int(images.shape[-2]), int(images.shape[-1]))
        total, copies = None, 0
        for scale in self.scales:
            scaled = _rescaled(images, scale)
            for mirrored in (False, True) if self.flip else (False,):
                probabilities = self._probabilities(scaled.flip(-1) if mirrored else scaled, size, mirrored)
                total = probabilities if total is None else total + probabilities
                copies += 1
        return SegmentationOutput(logits=(total / copies).clamp_min(1e-20).log())

    def _probabilities(self, x: Tensor, size: tuple[int, int], mirrored: bool) -> Tensor:
        height, width = int(x.shape[-2]), int(x.shape[-1])
        padded = F.pad(x, (0, _pad(width), 0, _pad(height)))
        logits = self.base(padded).logits[..., :height, :width].float()   # (B, K, h, w)
        if mirrored:
            logits = logits.flip(-1)
        if (height, width) != size:
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return logits.softmax(dim=1)


def _pad(length: int) -> int:
    return math.ceil(length / MULTIPLE) * MULTIPLE - length


def _rescaled(images: Tensor, scale: float) -> Tensor:
    if scale == 1.0:
        return images
    size = [max(1, round(images.shape[-2] * scale)), max(1, round(images.shape[-1] * scale))]
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=scale < 1.0)


def with_test_time_augmentation(model: SemanticSegmenter, *, scales: Sequence[float] = DEFAULT_SCALES,
                                flip: bool = True) -> SemanticSegmenter:
    """`model` evaluated on mirrored and rescaled copies. A CRF-as-RNN model keeps its CRF on top, once, on
    the averaged base probabilities (the CRF needs the image at the input's own scale)."""
    from ninshiki.models.segment.crf_rnn import CRFRefined

    if isinstance(model, CRFRefined):
        return CRFRefined(base=TestTimeAugmented(model.base, scales=scales, flip=flip), crf=model.crf).train(model.training)
    return TestTimeAugmented(model, scales=scales, flip=flip).train(model.training)
