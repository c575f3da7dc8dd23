"""Test-time augmentation: the mirrored copy is mirrored back onto the right pixels, rescaled copies are padded
to the network's multiple and resized back, the output is a log-probability, and a CRF stays on top."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ninshiki.config_segment import parse_scales
from ninshiki.models.segment.common import SemanticSegmenter
from ninshiki.models.segment.crf_rnn import CRFRefined, with_crf
from ninshiki.models.segment.tta import TestTimeAugmented, with_test_time_augmentation
from ninshiki.structures import SegmentationOutput


class PerPixel(SemanticSegmenter):
    """Scores of each pixel from its own colour only (a 1x1 convolution): mirroring and padding commute with
    it exactly. Like the real segmenters, it refuses sizes that are not multiples of 32."""

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__(num_classes=num_classes, input_size=32)
        self.score = nn.Conv2d(3, num_classes, 1)
        self.sizes: list[tuple[int, int]] = []

    def forward(self, images: Tensor, targets: Tensor | None = None) -> SegmentationOutput:
        assert images.shape[-2] % 32 == 0 and images.shape[-1] % 32 == 0, images.shape
        self.sizes.append((int(images.shape[-2]), int(images.shape[-1])))
        return SegmentationOutput(self.score(images))


class LeftHalf(SemanticSegmenter):
    """Class 1 on the left half of whatever it is given, class 0 on the right (logits +-5): not mirror-symmetric."""

    def __init__(self) -> None:
        super().__init__(num_classes=2, input_size=32)

    def forward(self, images: Tensor, targets: Tensor | None = None) -> SegmentationOutput:
        b, _, h, w = images.shape
        sign = (torch.arange(w) < w // 2).float().expand(b, h, w) * 2 - 1     # +1 left, -1 right
        return SegmentationOutput(torch.stack([-5 * sign, 5 * sign], dim=1))


def test_one_scale_without_mirror_is_the_model_itself() -> None:
    torch.manual_seed(0)
    base, images = PerPixel().eval(), torch.rand(2, 3, 64, 96)
    out = TestTimeAugmented(base, scales=(1.0,), flip=False)(images).logits
    torch.testing.assert_close(out, base(images).logits.log_softmax(1), atol=1e-5, rtol=1e-5)


def test_the_mirrored_copy_lands_back_on_its_pixels() -> None:
    torch.manual_seed(0)
    base, images = PerPixel().eval(), torch.rand(1, 3, 40, 50)    # neither side a multiple of 32: padded copies
    out = TestTimeAugmented(base, scales=(1.0,), flip=True)(images).logits
    assert base.sizes == [(64, 64), (64, 64)]
    padded = F.pad(images, (0, 14, 0, 24))
    torch.testing.assert_close(out, base(padded).logits[..., :40, :50].log_softmax(1), atol=1e-5, rtol=1e-5)


def test_a_mirrored_vote_is_a_real_vote() -> None:
    """The left-half model says 1 on the left of the mirrored copy too, which is the right of the image: the
    average is a tie everywhere (log 0.5), not class 1 on the left."""
    out = TestTimeAugmented(LeftHalf(), scales=(1.0,), flip=True)(torch.rand(1, 3, 32, 64)).logits
    torch.testing.assert_close(out, torch.full_like(out, torch.log(torch.tensor(0.5)).item()), atol=1e-4, rtol=0)


def test_rescaled_copies_are_padded_and_resized_back() -> None:
    torch.manual_seed(0)
    base = PerPixel().eval()
    images = torch.zeros(1, 3, 64, 64)
    images[:, 0, :, :32] = 1.0                                         # two flat halves
    out = TestTimeAugmented(base, scales=(0.75, 1.0, 1.5), flip=True)(images).logits
    assert out.shape == (1, 4, 64, 64)
    assert sorted(set(base.sizes)) == [(64, 64), (96, 96)]              # 48 and 64 pad to 64, 96 stays
    torch.testing.assert_close(out.exp().sum(1), torch.ones(1, 64, 64), atol=1e-5, rtol=0)   # probabilities
    expected = base(images).logits.log_softmax(1)                      # far from the edge every scale agrees
    torch.testing.assert_close(out[..., 8:24], expected[..., 8:24], atol=1e-4, rtol=0)
    torch.testing.assert_close(out[..., 40:56], expected[..., 40:56], atol=1e-4, rtol=0)


def test_a_crf_model_keeps_its_crf_on_top_of_the_averaged_base() -> None:
    refined = with_crf(PerPixel(), iterations=1, eval_iterations=2).eval()
    augmented = with_test_time_augmentation(refined, scales=(1.0, 0.5))
    assert isinstance(augmented, CRFRefined) and augmented.crf is refined.crf and not augmented.training
    assert isinstance(augmented.base, TestTimeAugmented) and augmented.base.base is refined.base
    out = augmented(torch.rand(1, 3, 64, 64)).logits
    assert out.shape == (1, 4, 64, 64) and torch.isfinite(out).all()


@pytest.mark.parametrize("text, expected", [("0.75,1,1.25", (0.75, 1.0, 1.25)), ("1", (1.0,)), (" 0.5 , 2", (0.5, 2.0))])
def test_scales_parse(text: str, expected: tuple[float, ...]) -> None:
    assert parse_scales(text) == expected


@pytest.mark.parametrize("text", ["", "a,b", "0,1", "-1", "10"])
def test_bad_scales_are_named(text: str) -> None:
    with pytest.raises(ValueError, match="--tta-scales"):
        parse_scales(text)
