"""Detection transforms: the letterbox and its inverse, boxes and masks following the pixels in every mode,
sanitizing, empty targets, and the mosaic."""
from __future__ import annotations

import pytest
import torch
from torch import Tensor
from torchvision.transforms import v2

from ninshiki.data.detection.mosaic import mosaic, random_center
from ninshiki.data.detection.transforms import (
    GREY,
    MODES,
    DetectionTransform,
    Letterbox,
    eval_transform,
    letterbox,
    letterbox_boxes,
    train_transform,
)

COLOURS = ((255, 0, 0), (0, 255, 0), (0, 0, 255))  # object k is painted in pure channel k


def painted(height: int, width: int, boxes: list[list[int]]) -> tuple[Tensor, dict[str, Tensor]]:
    """A black image with object k a filled rectangle of COLOURS[k], its box, label k and mask."""
    image = torch.zeros(3, height, width, dtype=torch.uint8)
    masks = torch.zeros(len(boxes), height, width, dtype=torch.uint8)
    for k, (x1, y1, x2, y2) in enumerate(boxes):
        image[:, y1:y2, x1:x2] = torch.tensor(COLOURS[k], dtype=torch.uint8)[:, None, None]
        masks[k, y1:y2, x1:x2] = 1
    target = {"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.arange(len(boxes)),
              "masks": masks}
    return image, target


def extent(region: Tensor) -> list[int] | None:
    """xyxy (x2, y2 exclusive) of the True pixels of an (H, W) bool map, or None when there are none."""
    ys, xs = torch.nonzero(region, as_tuple=True)
    if len(xs) == 0:
        return None
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def colour_region(image: Tensor, k: int) -> Tensor:
    """Pixels clearly of COLOURS[k] in a float image: channel k high, the others low."""
    others = [c for c in range(3) if c != k]
    return (image[k] > 0.63) & (image[others[0]] < 0.37) & (image[others[1]] < 0.37)


@pytest.mark.parametrize("height,width", [(37, 211), (300, 41), (64, 64), (480, 640), (17, 9)])
def test_letterbox_then_to_original_gives_the_boxes_back(height: int, width: int) -> None:
    gen = torch.Generator().manual_seed(height * 1000 + width)
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=gen)
    xy = torch.rand(20, 2, generator=gen) * torch.tensor([width, height])
    wh = torch.rand(20, 2, generator=gen) * torch.tensor([width, height]) / 2
    boxes = torch.cat([xy, xy + wh], dim=1)                            # (20, 4), some past the image
    boxes_clipped = torch.stack([boxes[:, 0], boxes[:, 1], boxes[:, 2].clamp(max=width),
                                 boxes[:, 3].clamp(max=height)], dim=1)
    out, box = letterbox(image, 96)
    assert out.shape == (3, 96, 96) and out.dtype == torch.uint8
    assert box.scale == pytest.approx(96 / max(height, width)) and (box.pad_x, box.pad_y) == (0.0, 0.0)
    assert max(box.resized) == 96 and box.size == (height, width)
    valid_h, valid_w = box.valid_size(96)
    assert box.valid_size((96, 96)) == (valid_h, valid_w)
    assert 0 <= valid_h - box.resized[0] <= 1 and 0 <= valid_w - box.resized[1] <= 1
    res_h, res_w = box.resized
    assert (out[:, res_h:] == GREY).all() and (out[:, :, res_w:] == GREY).all()   # padded bottom/right
    assert torch.allclose(box.to_original(letterbox_boxes(boxes, box)), boxes_clipped, atol=1e-4)
    inside = letterbox_boxes(boxes_clipped, box)
    assert (inside[:, 2] <= valid_w + 1e-4).all() and (inside[:, 3] <= valid_h + 1e-4).all()


def test_letterbox_keeps_the_pixels_where_the_boxes_go() -> None:
    image, target = painted(150, 400, [[40, 30, 200, 120], [300, 10, 390, 140]])
    out, box = letterbox(image, 200)
    moved = letterbox_boxes(target["boxes"], box)
    for k in range(2):
        found = extent(colour_region(out.float() / 255, k))
        assert torch.allclose(torch.tensor(found, dtype=torch.float32), moved[k], atol=1.0), (found, moved[k])


def test_eval_transform_maps_targets_to_input_and_back() -> None:
    image, target = painted(90, 160, [[10, 20, 70, 80], [100, 5, 150, 60]])
    out, result, box = eval_transform(64)(image, target)
    assert out.shape == (3, 64, 64) and out.dtype == torch.float32 and 0 <= out.min() and out.max() <= 1
    assert box == Letterbox(0.4, 0.0, 0.0, (90, 160))
    assert torch.allclose(box.to_original(result["boxes"]), target["boxes"], atol=1e-4)
    assert result["labels"].tolist() == [0, 1] and result["masks"].shape == (2, 64, 64)
    assert type(result["boxes"]) is torch.Tensor and type(out) is torch.Tensor   # plain tensors, not tv_tensors


def check_consistent(image: Tensor, target: dict[str, Tensor], size: int) -> None:
    """Every kept box is tight (2 px) around its object's colour and its mask; labels stayed with boxes."""
    assert image.shape == (3, size, size)
    boxes, labels, masks = target["boxes"], target["labels"], target["masks"]
    assert boxes.shape == (len(labels), 4) and masks.shape == (len(labels), size, size)
    assert (boxes[:, 2:] - boxes[:, :2] >= 2).all()                               # sanitized
    assert (boxes >= 0).all() and (boxes <= size).all()                           # clamped
    for box, k, mask in zip(boxes, labels.tolist(), masks):
        assert extent(mask.bool()) is not None
        assert (torch.tensor(extent(mask.bool()), dtype=torch.float32) - box).abs().max() <= 2
        if (box[2:] - box[:2]).min() >= 6:    # thinner remnants blur below the colour threshold
            found = extent(colour_region(image, k))
            assert found is not None, (k, box)
            assert (torch.tensor(found, dtype=torch.float32) - box).abs().max() <= 2, (k, found, box)


@pytest.mark.parametrize("mode", MODES)
def test_boxes_and_masks_follow_the_pixels_in_every_mode(mode: str) -> None:
    torch.manual_seed(0)
    transform = train_transform(96, mode=mode, photometric=False)
    kept = 0
    for trial in range(12):
        height, width = (120, 200) if trial % 2 else (210, 90)
        image, target = painted(height, width, [[5, 10, 60, 70], [70, 40, 85, 100], [20, 80, 80, 110]])
        out, result, _ = transform(image, target)
        check_consistent(out, result, 96)
        kept += len(result["labels"])
    assert kept >= 12   # some objects survive the crops (the test checks something)


@pytest.mark.parametrize("mode", ["ssd", "yolo"])
def test_photometric_changes_colours_not_geometry(mode: str) -> None:
    torch.manual_seed(1)
    transform = train_transform(64, mode=mode, photometric=True)
    image, target = painted(64, 64, [[8, 8, 40, 40], [44, 20, 60, 60]])
    changed = 0
    for _ in range(8):
        out, result, _ = transform(image, target)
        for box, k, mask in zip(result["boxes"], result["labels"].tolist(), result["masks"]):
            assert (torch.tensor(extent(mask.bool()), dtype=torch.float32) - box).abs().max() <= 2
            inner = torch.nn.functional.max_pool2d(1.0 - mask[None].float(), 5, 1, 2)[0] == 0   # eroded 2 px
            colour = torch.tensor(COLOURS[k], dtype=torch.float32)[:, None] / 255
            changed += int((out[:, inner] - colour).abs().max() > 0.05) if inner.any() else 0
    assert changed > 0


def test_sanitize_drops_boxes_cropped_out_with_their_labels_masks_and_flags() -> None:
    image, target = painted(100, 100, [[0, 0, 20, 20], [40, 40, 60, 60], [80, 80, 100, 100]])
    target["iscrowd"] = torch.tensor([False, True, False])
    transform = DetectionTransform(size=50, before=[v2.CenterCrop(50)])   # keeps pixels 25..75 only
    _, result, box = transform(image, target)
    assert result["labels"].tolist() == [1] and result["iscrowd"].tolist() == [True]
    assert result["boxes"].tolist() == [[15.0, 15.0, 35.0, 35.0]] and result["masks"].shape == (1, 50, 50)
    assert box.size == (50, 50) and box.scale == 1.0


def test_sanitize_drops_boxes_shrunk_below_two_pixels() -> None:
    image, target = painted(400, 400, [[10, 10, 14, 200], [100, 100, 300, 300]])   # 4 px wide -> 0.8 px
    _, result, _ = eval_transform(80)(image, target)
    assert result["labels"].tolist() == [1]
    assert torch.allclose(result["boxes"], torch.tensor([[20.0, 20.0, 60.0, 60.0]]))


@pytest.mark.parametrize("mode", MODES)
def test_empty_targets(mode: str) -> None:
    torch.manual_seed(2)
    transform = train_transform(48, mode=mode)
    for with_masks in (False, True):
        target = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
        if with_masks:
            target["masks"] = torch.zeros(0, 30, 70, dtype=torch.uint8)
        out, result, _ = transform(torch.full((3, 30, 70), 200, dtype=torch.uint8), target)
        assert out.shape == (3, 48, 48) and result["boxes"].shape == (0, 4) and result["labels"].shape == (0,)
        assert result["boxes"].dtype == torch.float32 and result["labels"].dtype == torch.int64
        if with_masks:
            assert result["masks"].shape == (0, 48, 48)


def test_inputs_are_not_modified() -> None:
    torch.manual_seed(3)
    image, target = painted(50, 80, [[5, 5, 40, 40]])
    before = image.clone(), {k: v.clone() for k, v in target.items()}
    for mode in MODES:
        train_transform(32, mode=mode)(image, target)
    assert torch.equal(image, before[0]) and all(torch.equal(target[k], before[1][k]) for k in target)


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="unknown augmentation mode 'mixup'"):
        train_transform(64, mode="mixup")
    with pytest.raises(ValueError, match="probability"):
        train_transform(64, mosaic=1.5)
    image, target = painted(20, 20, [[1, 1, 9, 9]])
    with pytest.raises(ValueError, match="uint8"):
        eval_transform(16)(image.float(), target)
    with pytest.raises(ValueError, match="masks of shape"):
        eval_transform(16)(image, {**target, "masks": target["masks"][:, :10]})
    with pytest.raises(ValueError, match="labels of shape"):
        eval_transform(16)(image, {**target, "labels": torch.tensor([0, 1])})


def quadrant_parts() -> list[tuple[Tensor, dict[str, Tensor]]]:
    """Four images of different shapes, each one flat colour with a box covering it."""
    parts = []
    for k, (height, width) in enumerate([(40, 60), (60, 30), (50, 50), (30, 80)]):
        image = torch.full((3, height, width), 40 * (k + 1), dtype=torch.uint8)
        target = {"boxes": torch.tensor([[0.0, 0.0, width, height]]), "labels": torch.tensor([k]),
                  "masks": torch.ones(1, height, width, dtype=torch.uint8)}
        parts.append((image, target))
    return parts


@pytest.mark.parametrize("center", [(32.0, 32.0), (20.0, 45.0)])
def test_mosaic_puts_one_image_and_its_box_in_each_quadrant(center: tuple[float, float]) -> None:
    image, target = mosaic(quadrant_parts(), 64, center=center)
    cx, cy = (int(v) for v in center)
    assert image.shape == (3, 64, 64) and image.dtype == torch.uint8
    assert target["labels"].tolist() == [0, 1, 2, 3] and target["masks"].shape == (4, 64, 64)
    quadrants = [(0, 0, cx, cy), (cx, 0, 64, cy), (0, cy, cx, 64), (cx, cy, 64, 64)]   # xyxy
    for k, (x1, y1, x2, y2) in enumerate(quadrants):
        box = target["boxes"][k]
        assert x1 <= box[0] < box[2] <= x2 and y1 <= box[1] < box[3] <= y2      # in its quadrant
        assert box[0] == x1 or box[2] == x2                                      # touching the centre lines
        region = image[0] == 40 * (k + 1)
        assert extent(region) == [round(v) for v in box.tolist()]               # the box is its pixels
        assert extent(target["masks"][k].bool()) == [round(v) for v in box.tolist()]


def test_mosaic_cuts_boxes_at_the_canvas_and_drops_hidden_ones() -> None:
    parts = quadrant_parts()
    image0, _ = parts[0]
    parts[0] = (image0, {"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0], [50.0, 30.0, 60.0, 40.0]]),
                         "labels": torch.tensor([7, 8]), "masks": torch.zeros(2, 40, 60, dtype=torch.uint8)})
    _, target = mosaic(parts, 64, center=(20.0, 20.0))   # image 0 is 64 x 43 ending at (20, 20)
    assert 7 not in target["labels"].tolist()            # its corner is far off the canvas
    assert 8 in target["labels"].tolist()
    assert "masks" in target


def test_random_center_stays_in_the_middle_half() -> None:
    gen = torch.Generator().manual_seed(0)
    centers = torch.tensor([random_center(100, gen) for _ in range(200)])
    assert centers.min() >= 25 and centers.max() <= 75 and centers.std() > 10
