"""Segmentation transforms: image and class map stay aligned, padding is ignore, evaluation maps back."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ninshiki.data.segmentation.transforms import (
    IGNORE_INDEX,
    Placement,
    eval_transform,
    logits_to_original,
    resize_pair,
    train_transform,
)


def square_pair(height: int = 48, width: int = 64, box: tuple[int, int, int, int] = (8, 12, 28, 30),
                label: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """A black image with a white square at `box` = (x1, y1, x2, y2) and the mask marking it `label`."""
    x1, y1, x2, y2 = box
    image = torch.zeros((3, height, width), dtype=torch.uint8)
    image[:, y1:y2, x1:x2] = 255
    mask = torch.zeros((height, width), dtype=torch.uint8)
    mask[y1:y2, x1:x2] = label
    return image, mask


def interior(region: torch.Tensor) -> torch.Tensor:
    """Pixels whose whole 3 x 3 neighbourhood lies in `region` (a bool (H, W) map): away from its edges."""
    eroded = -F.max_pool2d(-region[None, None].float(), 3, stride=1, padding=1)
    return eroded[0, 0] > 0.5


def checkerboard_pair(height: int = 48, width: int = 64, cell: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """White cells labelled 3 on black cells labelled 0: every training window holds both, with edges."""
    y, x = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    white = (x // cell + y // cell) % 2 == 0   # width / cell even: a flip swaps the colours of the columns
    image = (white.to(torch.uint8) * 255).expand(3, height, width).contiguous()
    return image, white.to(torch.uint8) * 3


def assert_aligned(out: torch.Tensor, target: torch.Tensor, label: int) -> None:
    """Away from edges (where the bilinear image blends and the nearest mask chooses) image and mask agree."""
    inside, outside = interior(target == label), interior(target == 0)
    assert int(inside.sum()) > 0 and int(outside.sum()) > 0
    assert bool((out[0][inside] > 0.75).all()) and bool((out[0][outside] < 0.25).all())


@pytest.mark.parametrize("seed", range(6))
def test_train_square_stays_on_its_mask(seed: int) -> None:
    torch.manual_seed(seed)
    image, mask = square_pair(box=(20, 8, 52, 40))   # off centre: a flip of one but not the other shows
    out, target, placement = train_transform(32, scale=(0.5, 1.0), photometric=True)(image, mask)
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32 and 0.0 <= out.min() and out.max() <= 1.0
    assert target.shape == (32, 32) and target.dtype == torch.int64
    assert set(target.unique().tolist()) <= {0, 3, IGNORE_INDEX}
    assert_aligned(out, target, 3)
    assert 0.5 <= placement.scale <= 1.0 and placement.original_size == (48, 64)


@pytest.mark.parametrize("seed", range(6))
def test_train_checkerboard_stays_on_its_mask_at_every_scale(seed: int) -> None:
    torch.manual_seed(seed)
    image, mask = checkerboard_pair()
    out, target, placement = train_transform(32)(image, mask)
    assert_aligned(out, target, 3)
    assert 0.5 <= placement.scale <= 2.0


def test_train_flip_without_rescale_is_exact() -> None:
    image, mask = square_pair(32, 32, box=(2, 4, 10, 20))
    out, target, placement = train_transform(32, scale=(1.0, 1.0), hflip=1.0, photometric=False)(image, mask)
    assert torch.equal(target, mask.flip(-1).to(torch.int64))
    assert torch.equal(out, image.flip(-1).float() / 255)
    assert placement == Placement(1.0, (32, 32), (32, 32))


def test_train_padding_is_zero_in_images_and_ignore_in_masks() -> None:
    torch.manual_seed(0)
    image, mask = square_pair(20, 24, box=(0, 0, 24, 10), label=1)
    image[:, 10:] = 200   # a bright bottom half: the jitter must not spill into the padding
    out, target, placement = train_transform(32, scale=(1.0, 1.0))(image, mask)
    assert placement.valid_size == (20, 24)
    assert bool((out[:, 20:] == 0).all()) and bool((out[:, :, 24:] == 0).all())
    assert bool((target[20:] == IGNORE_INDEX).all()) and bool((target[:, 24:] == IGNORE_INDEX).all())
    assert bool((target[:20, :24] != IGNORE_INDEX).all())
    assert target[:10, :24].unique().tolist() == [1] and target[10:20, :24].unique().tolist() == [0]


@pytest.mark.parametrize(("scale", "valid"), [((2.0, 2.0), (32, 32)), ((0.5, 0.5), (12, 16))])
def test_train_rescale_sets_the_window(scale: tuple[float, float], valid: tuple[int, int]) -> None:
    image, mask = square_pair(24, 32)
    out, target, placement = train_transform(32, scale=scale, photometric=False)(image, mask)
    assert placement.scale == scale[0] and placement.valid_size == valid
    assert bool((target[: valid[0], : valid[1]] != IGNORE_INDEX).all())
    assert int((target == IGNORE_INDEX).sum()) == 32 * 32 - valid[0] * valid[1]
    assert bool((out[:, valid[0]:] == 0).all()) and bool((out[:, :, valid[1]:] == 0).all())


def test_mask_resize_never_invents_classes() -> None:
    mask = torch.tensor([[0, 3, 7, IGNORE_INDEX]], dtype=torch.uint8).repeat_interleave(5, 1).repeat(20, 1)
    image = torch.zeros((3, *mask.shape), dtype=torch.uint8)
    for size in [(7, 9), (33, 41)]:
        _, resized = resize_pair(image, mask, size)
        assert resized.shape == size and set(resized.unique().tolist()) == {0, 3, 7, IGNORE_INDEX}


@pytest.mark.parametrize("seed", range(6))
def test_train_rotation_keeps_image_and_mask_together(seed: int) -> None:
    torch.manual_seed(seed)
    image, mask = checkerboard_pair()
    out, target, _ = train_transform(48, scale=(1.0, 1.0), rotate=180.0, photometric=False)(image, mask)
    assert set(target.unique().tolist()) <= {0, 3, IGNORE_INDEX}
    # a rotated edge blends over up to sqrt(2) px: two pixels in from every edge, the image is the class's colour
    inside, outside = interior(interior(target == 3)), interior(interior(target == 0))
    assert int(inside.sum()) > 0 and int(outside.sum()) > 0
    assert bool((out[0][inside] > 0.75).all()) and bool((out[0][outside] < 0.25).all())
    entered = interior(target == IGNORE_INDEX)   # corners rotated in from outside the frame: black, ignored
    assert bool((out[:, entered] == 0).all())


def test_train_rotation_of_a_centred_disc_keeps_its_area() -> None:
    y, x = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    disc = ((y - 31.5) ** 2 + (x - 31.5) ** 2 < 20 ** 2).to(torch.uint8)
    image, mask = (disc * 255).expand(3, 64, 64).contiguous(), disc * 2
    for seed in range(4):
        torch.manual_seed(seed)
        _, target, _ = train_transform(64, scale=(1.0, 1.0), rotate=90.0, photometric=False)(image, mask)
        assert abs(int((target == 2).sum()) - int(disc.sum())) <= 8   # a rotated disc is the same disc
        assert int((target == IGNORE_INDEX).sum()) > 0                  # some corners came in from outside


def test_train_rejects_bad_inputs() -> None:
    image, mask = square_pair()
    with pytest.raises(ValueError, match="mask"):
        train_transform(32)(image, mask[:-1])
    with pytest.raises(ValueError, match="uint8"):
        train_transform(32)(image.float(), mask)
    with pytest.raises(ValueError, match="hflip"):
        train_transform(32, hflip=2.0)
    with pytest.raises(ValueError, match="scale"):
        train_transform(32, scale=(2.0, 1.0))
    with pytest.raises(ValueError, match="rotate"):
        train_transform(32, rotate=200.0)


def test_eval_leaves_images_within_max_size_alone() -> None:
    image, mask = square_pair()
    for transform in (eval_transform(), eval_transform(max_size=64)):
        out, target, placement = transform(image, mask)
        assert torch.equal(out, image.float() / 255) and torch.equal(target, mask.to(torch.int64))
        assert placement == Placement(1.0, (48, 64), (48, 64))
    assert eval_transform().multiple == 32 and eval_transform(multiple=16).multiple == 16


def test_eval_scales_down_to_max_size_keeping_the_aspect() -> None:
    image, mask = square_pair(48, 64, box=(8, 12, 28, 30))
    out, target, placement = eval_transform(max_size=32)(image, mask)
    assert out.shape == (3, 24, 32) and target.shape == (24, 32) and target.dtype == torch.int64
    assert placement == Placement(0.5, (24, 32), (48, 64))
    assert set(target.unique().tolist()) == {0, 3}
    assert bool((out[0][interior(target == 3)] > 0.75).all())


def test_logits_of_the_valid_region_map_back_to_the_original_mask() -> None:
    mask = torch.zeros((48, 64), dtype=torch.uint8)
    mask[16:32, 16:48] = 2        # even edges: halving and doubling are exact
    mask[0:8, 40:64] = 1
    image = torch.zeros((3, 48, 64), dtype=torch.uint8)
    _, small, placement = eval_transform(max_size=32)(image, mask)
    logits = torch.full((3, 32, 32), -5.0)
    logits[0] = 50.0              # the padding says "class 0" loudly: it must be cut off, not upsampled
    logits[:, :24, :32] = F.one_hot(small, 3).permute(2, 0, 1).float()   # (3, 24, 32)
    back = logits_to_original(logits, placement.valid_size, placement.original_size)
    assert back.shape == (3, 48, 64) and back.dtype == torch.float32
    assert torch.equal(back.argmax(0), mask.to(torch.int64))
    same = logits_to_original(logits, (24, 32), (24, 32))
    assert torch.equal(same, logits[:, :24, :32])
    with pytest.raises(ValueError, match="valid region"):
        logits_to_original(logits, (40, 32), (48, 64))
