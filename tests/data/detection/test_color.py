"""YOLO's HSV jitter through OpenCV lookup tables."""
from __future__ import annotations

import pytest
import torch
from torchvision import tv_tensors

from ninshiki.data.detection.color import RandomHSV, hsv_jitter


def flat(rgb: tuple[int, int, int]) -> torch.Tensor:
    return torch.tensor(rgb, dtype=torch.uint8)[:, None, None].expand(3, 4, 5).contiguous()


def test_no_change_is_nearly_the_identity() -> None:
    image = torch.randint(0, 256, (3, 32, 40), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    out = hsv_jitter(image, hue_shift=0.0, saturation=1.0, value=1.0)
    assert out.shape == image.shape and out.dtype == torch.uint8
    assert (out.int() - image.int()).abs().max() <= 8          # 8-bit HSV round trip
    assert (out.int() - image.int()).abs().float().mean() < 1.5


@pytest.mark.parametrize("shift,expected", [(1 / 3, (0, 255, 0)), (2 / 3, (0, 0, 255)), (-1 / 3, (0, 0, 255))])
def test_hue_shift_turns_the_colour_wheel(shift: float, expected: tuple[int, int, int]) -> None:
    out = hsv_jitter(flat((255, 0, 0)), hue_shift=shift, saturation=1.0, value=1.0)
    assert (out[:, 0, 0].int() - torch.tensor(expected)).abs().max() <= 8


def test_saturation_and_value_gains() -> None:
    darker = hsv_jitter(flat((200, 100, 50)), hue_shift=0.0, saturation=1.0, value=0.5)
    assert (darker[:, 0, 0].int() - torch.tensor([100, 50, 25])).abs().max() <= 3
    gray = hsv_jitter(flat((200, 100, 50)), hue_shift=0.0, saturation=0.0, value=1.0)
    assert gray[:, 0, 0].tolist() == [200, 200, 200]


def test_random_hsv_changes_only_the_image() -> None:
    torch.manual_seed(0)
    image = tv_tensors.Image(torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8))
    boxes = tv_tensors.BoundingBoxes(torch.tensor([[1.0, 2.0, 9.0, 12.0]]), format="XYXY", canvas_size=(16, 16))
    masks = tv_tensors.Mask(torch.ones(1, 16, 16, dtype=torch.uint8))
    out, target = RandomHSV()(image, {"boxes": boxes, "masks": masks, "labels": torch.tensor([3])})
    assert isinstance(out, tv_tensors.Image) and not torch.equal(out, image)
    assert torch.equal(target["boxes"], boxes) and torch.equal(target["masks"], masks)
    assert target["labels"].tolist() == [3]
    with pytest.raises(ValueError, match="hue must be in"):
        RandomHSV(hue=0.7)
