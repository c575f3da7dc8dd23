"""YOLO v1: the paper's network, target encoding, decoding, the loss against a slow loop of equation (3), and
an overfitting run of `yolov1_small`."""
from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn
from torchvision.ops import box_iou

from ninshiki.models.detect.yolov1 import YoloV1Output, yolov1, yolov1_small
from ninshiki.models.detect.yolov1_loss import (
    YoloV1Loss,
    decode_boxes,
    decode_predictions,
    encode_targets,
    yolov1_loss,
)


def _target(boxes: list[list[float]], labels: list[int], dtype: torch.dtype = torch.float32) -> dict[str, Tensor]:
    return {"boxes": torch.tensor(boxes, dtype=dtype).reshape(-1, 4), "labels": torch.tensor(labels).long()}


# ---------------------------------------------------------------------------------------------------- networks

def test_yolov1_is_the_papers_network() -> None:
    with torch.device("meta"):   # shapes only: skips initialising 271M parameters (seconds on one core)
        paper_model = yolov1(num_classes=20).eval()
    convs = [m for m in paper_model.features if isinstance(m, nn.Conv2d)]
    assert len(convs) == 24 and convs[0].kernel_size == (7, 7) and convs[0].stride == (2, 2)
    assert [m.negative_slope for m in paper_model.modules() if isinstance(m, nn.LeakyReLU)] == [0.1] * 25
    fc1, dropout, fc2 = paper_model.classifier[0], paper_model.classifier[2], paper_model.classifier[3]
    assert fc1.in_features == 7 * 7 * 1024 and fc1.out_features == 4096 and dropout.p == 0.5
    assert fc2.out_features == 7 * 7 * 30 and paper_model.classifier_names == ("classifier.3",)
    shapes = []
    hook = paper_model.features.register_forward_hook(lambda module, args, out: shapes.append(out.shape))
    with torch.no_grad():
        raw = paper_model(torch.rand(1, 3, 448, 448, device="meta"))
    hook.remove()
    assert shapes == [(1, 1024, 7, 7)]
    assert isinstance(raw, YoloV1Output) and raw.grid.shape == (1, 7, 7, 30) and raw.image_size == (448, 448)


def test_yolov1_without_batch_norm_is_plain() -> None:
    with torch.device("meta"):
        model = yolov1(num_classes=3, batch_norm=False, grid_size=5, boxes_per_cell=3)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert all(m.bias is not None for m in model.features if isinstance(m, nn.Conv2d))
    assert model.classifier[3].out_features == 5 * 5 * (3 * 5 + 3)


@pytest.mark.parametrize(("kwargs", "size", "grid"), [
    ({}, 320, (10, 10, 2 * 5 + 4)),
    ({"grid_size": 7, "boxes_per_cell": 3}, 224, (7, 7, 3 * 5 + 4)),
    ({"grid_size": 20}, 320, (20, 20, 14)),    # S = 20 > 320 / 32: the stride-16 map
    ({"grid_size": 4}, 256, (4, 4, 14)),       # the 8 x 8 stride-32 map average-pooled to 4 x 4
])
def test_yolov1_small_output_shape(kwargs: dict, size: int, grid: tuple[int, int, int]) -> None:
    model = yolov1_small(num_classes=4, **kwargs)
    for training in (True, False):
        model.train(training)
        with torch.no_grad():
            raw = model(torch.rand(2, 3, size, size))
        assert isinstance(raw, YoloV1Output) and raw.grid.shape == (2, *grid) and raw.image_size == (size, size)
    assert model.backbone.feature_info[0].stride == (16 if grid[0] == 20 else 32)
    assert model.get_submodule(model.classifier_names[0]).out_channels == grid[-1]
    assert isinstance(model.get_submodule(model.first_conv), nn.Conv2d)


def test_factories_pass_the_loss_weights() -> None:
    model = yolov1_small(num_classes=2, lambda_coord=2.0, lambda_noobj=0.1, confidence_target="one", nms_iou=0.3)
    assert model.criterion == YoloV1Loss(lambda_coord=2.0, lambda_noobj=0.1, confidence_target="one")
    assert (model.nms_iou, model.score_threshold, model.max_detections, model.input_size) == (0.3, 0.001, 100, 320)
    with pytest.raises(ValueError, match="confidence_target"):
        yolov1_small(num_classes=2, confidence_target="max")
    with pytest.raises(ValueError, match=r"images \(B, 3, H, W\)"):
        model(torch.rand(1, 1, 64, 64))


# ---------------------------------------------------------------------------------------- encoding, decoding

def test_encoding_puts_the_object_in_its_cell() -> None:
    # 100 x 200 (h, w) image, S = 4: cells are 50 wide and 25 high. Centre (130, 40) -> column 2, row 1.
    target = _target([[110.0, 30.0, 150.0, 50.0]], [2])
    encoded = encode_targets([target], grid_size=4, num_classes=3, image_size=(100, 200))
    assert encoded.shape == (1, 4, 4, 8)
    assert encoded[..., 4].nonzero().tolist() == [[0, 1, 2]]
    x, y, sqrt_w, sqrt_h = encoded[0, 1, 2, :4].tolist()
    assert x == pytest.approx(130 / 50 - 2) and y == pytest.approx(40 / 25 - 1)
    assert sqrt_w == pytest.approx(math.sqrt(40 / 200)) and sqrt_h == pytest.approx(math.sqrt(20 / 100))
    assert encoded[0, 1, 2, 5:].tolist() == [0.0, 0.0, 1.0]


def test_encoding_keeps_the_largest_object_of_a_cell_and_handles_edges() -> None:
    targets = [_target([[0, 0, 10, 10], [0, 0, 30, 30], [2, 2, 28, 28], [90, 90, 100, 100]], [0, 1, 2, 0]),
               _target([], []),
               _target([[80, 0, 120, 40], [100, 60, 100, 80]], [1, 2])]   # leaves the image; on its right edge
    encoded = encode_targets(targets, grid_size=2, num_classes=3, image_size=(100, 100))
    assert encoded[..., 4].nonzero().tolist() == [[0, 0, 0], [0, 1, 1], [2, 0, 1], [2, 1, 1]]
    assert encoded[0, 0, 0, 5:].tolist() == [0.0, 1.0, 0.0]         # the 30 x 30 box, not the first or last
    assert encoded[0, 0, 0, 2].item() == pytest.approx(math.sqrt(0.3))
    assert encoded[1].abs().sum() == 0
    # Clipped to x 80..100: centre 90, 0.8 into column 1.
    assert encoded[2, 0, 1, :4].tolist() == pytest.approx([0.8, 0.4, math.sqrt(0.2), math.sqrt(0.4)])
    # A centre on the right edge (x = 100) belongs to the last column, at offset 1.
    assert encoded[2, 1, 1, :4].tolist() == pytest.approx([1.0, 0.4, 0.0, math.sqrt(0.2)])
    assert encoded[2, 1, 1, 5:].tolist() == [0.0, 0.0, 1.0]


def test_encoding_rejects_bad_targets() -> None:
    with pytest.raises(ValueError, match=r"target 1: labels must be in \[0, 3\)"):
        encode_targets([_target([], []), _target([[0, 0, 5, 5]], [3])], grid_size=2, num_classes=3,
                       image_size=(10, 10))
    with pytest.raises(ValueError, match="target 0: boxes must be finite xyxy"):
        encode_targets([_target([[5, 0, 1, 5]], [0])], grid_size=2, num_classes=3, image_size=(10, 10))
    with pytest.raises(ValueError, match="target 0: 1 boxes but 2 labels"):
        encode_targets([{"boxes": torch.zeros(1, 4), "labels": torch.zeros(2).long()}], grid_size=2,
                       num_classes=3, image_size=(10, 10))


def test_decoding_the_encoding_gives_back_the_boxes() -> None:
    torch.manual_seed(0)
    size, s = (120, 200), 6
    xy = torch.rand(12, 2) * torch.tensor([150.0, 90.0])
    boxes = torch.cat([xy, xy + torch.rand(12, 2) * torch.tensor([50.0, 30.0]) + 1], 1)   # (12, 4) xyxy
    encoded = encode_targets([_target(boxes.tolist(), [0] * 12)], grid_size=s, num_classes=1, image_size=size)
    kept = encoded[..., 4] > 0
    decoded = decode_boxes(encoded[..., :4].unsqueeze(3), size).squeeze(3)[kept]          # (P, 4) xyxy
    matches = box_iou(decoded, boxes).amax(1)
    assert len(decoded) >= 6 and torch.allclose(matches, torch.ones_like(matches), atol=1e-5)


def test_postprocess_scores_are_class_probability_times_confidence() -> None:
    model = yolov1_small(num_classes=3, grid_size=2, boxes_per_cell=2, input_size=64)
    grid = torch.zeros(1, 2, 2, 13)
    grid[0, 1, 0, :5] = torch.tensor([0.5, 0.5, 0.5, 0.25, 0.8])       # cell (row 1, col 0), predictor 0
    grid[0, 1, 0, 5:10] = torch.tensor([0.5, 0.5, 0.5, 0.25, 0.3])     # predictor 1, the same box
    grid[0, 1, 0, 10:] = torch.tensor([0.1, 0.9, 1.4])                 # the class value 1.4 clamps to 1
    model.score_threshold = 0.5
    detections = model.postprocess(YoloV1Output(grid, (64, 64)))[0]
    assert detections.labels.tolist() == [2, 1] and detections.scores.tolist() == pytest.approx([0.8, 0.72])
    assert detections.boxes[0].tolist() == pytest.approx([16 - 8, 48 - 2, 16 + 8, 48 + 2])
    clipped = model.postprocess(YoloV1Output(grid, (64, 64)), [(47, 20)])[0]
    assert clipped.boxes[0].tolist() == pytest.approx([8, 46, 20, 47])
    boxes, scores = decode_predictions(grid, boxes_per_cell=2, image_size=(64, 64))
    assert boxes.shape == (1, 8, 4) and scores.shape == (1, 8, 3) and scores.max() == pytest.approx(0.8)


# ------------------------------------------------------------------------------------------------------ loss

def _perfect_grid(encoded: Tensor, boxes_per_cell: int) -> Tensor:
    # Every predictor of an object cell on the exact box; the first (responsible on the IoU tie) confident.
    n, s = encoded.shape[:2]
    predictors = torch.zeros(n, s, s, boxes_per_cell, 5)
    predictors[..., :4] = encoded[..., None, :4]
    predictors[..., 0, 4] = encoded[..., 4]
    return torch.cat([predictors.flatten(3), encoded[..., 5:]], -1)   # (N, S, S, 5B + C)


@pytest.mark.parametrize("confidence_target", ["iou", "one"])
def test_loss_is_zero_for_the_perfect_prediction(confidence_target: str) -> None:
    targets = [_target([[10, 20, 60, 90], [70, 5, 95, 40], [12, 22, 58, 80]], [0, 2, 1]), _target([], [])]
    encoded = encode_targets(targets, grid_size=3, num_classes=3, image_size=(100, 100))
    losses = yolov1_loss(_perfect_grid(encoded, 2), targets, boxes_per_cell=2, image_size=(100, 100),
                         confidence_target=confidence_target)
    assert set(losses) == {"loss", "loss_xy", "loss_wh", "loss_object", "loss_noobject", "loss_class"}
    assert losses["loss"].item() == pytest.approx(0.0, abs=1e-10)


def test_an_image_without_objects_gives_only_the_noobj_term() -> None:
    grid = torch.randn(2, 4, 4, 2 * 5 + 3)
    losses = yolov1_loss(grid, [_target([], [])] * 2, boxes_per_cell=2, image_size=(64, 64), lambda_noobj=0.5)
    expected = 0.5 * grid[..., [4, 9]].square().sum() / 2
    assert losses["loss_noobject"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert losses["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert all(losses[name] == 0 for name in ("loss_xy", "loss_wh", "loss_object", "loss_class"))


def _iou(a: list[float], b: list[float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / max(union, 1e-9)


def _reference_loss(grid: Tensor, targets: list[dict[str, Tensor]], k: int, size: tuple[int, int],
                    lambda_coord: float, lambda_noobj: float, confidence_target: str) -> tuple[float, Tensor]:
    """Equation (3) of the paper and its gradient, one image, cell and predictor at a time, in Python floats.

    The gradient treats the IoU confidence target as a constant, as the paper's Darknet does.
    """
    n, s, _, channels = grid.shape
    height, width = size
    def clamp(v: float) -> float:
        return min(max(v, 0.0), 1.0)

    total, gradient = 0.0, torch.zeros_like(grid)
    for i in range(n):
        objects: dict[tuple[int, int], tuple[float, ...]] = {}
        for (x1, y1, x2, y2), label in zip(targets[i]["boxes"].tolist(), targets[i]["labels"].tolist()):
            x1, x2, y1, y2 = clamp(x1 / width), clamp(x2 / width), clamp(y1 / height), clamp(y2 / height)
            cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
            cell = (min(int(cy * s), s - 1), min(int(cx * s), s - 1))
            if cell not in objects or w * h > objects[cell][0]:      # the largest; the first of equals
                objects[cell] = (w * h, cx, cy, w, h, label)
        for row in range(s):
            for col in range(s):
                p, g = grid[i, row, col].tolist(), gradient[i, row, col]
                best, goal = -1, []
                if (row, col) in objects:
                    _, cx, cy, w, h, label = objects[(row, col)]
                    truth = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
                    ious, distances = [], []
                    for b in range(k):
                        x, y, sw, sh = (clamp(v) for v in p[5 * b:5 * b + 4])
                        pcx, pcy, pw, ph = (col + x) / s, (row + y) / s, sw * sw, sh * sh
                        ious.append(_iou([pcx - pw / 2, pcy - ph / 2, pcx + pw / 2, pcy + ph / 2], truth))
                        distances.append((pcx - cx) ** 2 + (pcy - cy) ** 2 + (pw - w) ** 2 + (ph - h) ** 2)
                    best = ious.index(max(ious)) if max(ious) > 0 else distances.index(min(distances))
                    goal = [cx * s - col, cy * s - row, math.sqrt(w), math.sqrt(h),
                            ious[best] if confidence_target == "iou" else 1.0]
                    for c in range(channels - 5 * k):
                        total += (p[5 * k + c] - (c == label)) ** 2
                        g[5 * k + c] = 2 * (p[5 * k + c] - (c == label)) / n
                for b in range(k):
                    if b != best:
                        total += lambda_noobj * p[5 * b + 4] ** 2
                        g[5 * b + 4] = 2 * lambda_noobj * p[5 * b + 4] / n
                        continue
                    for j in range(5):
                        weight = lambda_coord if j < 4 else 1.0
                        total += weight * (p[5 * b + j] - goal[j]) ** 2
                        g[5 * b + j] = 2 * weight * (p[5 * b + j] - goal[j]) / n
    return total / n, gradient


@pytest.mark.parametrize(("k", "confidence_target", "seed"), [(2, "iou", 0), (3, "one", 1), (1, "iou", 2)])
def test_loss_matches_a_loop_over_the_papers_formula(k: int, confidence_target: str, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    s, classes, size = 5, 4, (90, 120)
    targets = []
    for count in (7, 0, 12):   # many objects: several share a cell; the middle image is background
        xy = torch.rand(count, 2, generator=generator, dtype=torch.float64) * torch.tensor([110.0, 80.0])
        wh = torch.rand(count, 2, generator=generator, dtype=torch.float64) * torch.tensor([60.0, 50.0])
        labels = torch.randint(0, classes, (count,), generator=generator)
        targets.append({"boxes": torch.cat([xy, xy + wh], 1), "labels": labels})   # may leave the image: clipped
    grid = torch.rand(3, s, s, 5 * k + classes, generator=generator, dtype=torch.float64) * 1.6 - 0.3
    grid.requires_grad_(True)
    losses = yolov1_loss(grid, targets, boxes_per_cell=k, image_size=size, lambda_coord=5.0, lambda_noobj=0.5,
                         confidence_target=confidence_target)
    expected, expected_gradient = _reference_loss(grid.detach(), targets, k, size, 5.0, 0.5, confidence_target)
    assert losses["loss"].item() == pytest.approx(expected, rel=1e-12)
    assert sum(v for name, v in losses.items() if name != "loss").item() == pytest.approx(expected, rel=1e-12)
    (gradient,) = torch.autograd.grad(losses["loss"], grid)
    torch.testing.assert_close(gradient, expected_gradient, rtol=1e-12, atol=1e-15)


def test_loss_fallback_and_half_precision() -> None:
    # No predictor overlaps the object: the nearest in (cx, cy, w, h) is responsible, as in Darknet.
    target = [_target([[60, 60, 64, 64]], [0])]                    # centre (62, 62): cell (1, 1) of S = 2
    grid = torch.zeros(1, 2, 2, 2 * 5 + 1)
    grid[0, 1, 1, :4] = torch.tensor([0.0, 0.0, 0.1, 0.1])         # a tiny box at the cell's corner (32, 32)
    grid[0, 1, 1, 5:9] = torch.tensor([0.8, 0.8, 0.1, 0.1])        # a tiny box at (57.6, 57.6), nearer
    losses = yolov1_loss(grid, target, boxes_per_cell=2, image_size=(64, 64))
    assert losses["loss_xy"].item() == pytest.approx(5.0 * 2 * (0.8 - 62 / 32 + 1) ** 2)   # predictor 1's
    assert losses["loss_wh"].item() == pytest.approx(5.0 * 2 * (0.1 - 0.25) ** 2)
    assert losses["loss_object"].item() == 0.0                      # IoU 0 target, confidence 0
    # Half-precision grids (autocast) are summed in float32; fp16 rounds the grid's 0.8 and 0.1.
    half = yolov1_loss(grid.half(), target, boxes_per_cell=2, image_size=(64, 64))
    assert half["loss"].dtype == torch.float32 and half["loss"].item() == pytest.approx(losses["loss"].item(), rel=1e-3)


# ------------------------------------------------------------------------------------------------- training

_COLOURS = torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.8, 0.2], [0.15, 0.2, 0.95]])


def _scene(generator: torch.Generator, size: int, objects: list) -> tuple[Tensor, dict[str, Tensor]]:
    """Noise with filled rectangles and disks in the colour of their class; boxes xyxy in pixels."""
    image = torch.rand(3, size, size, generator=generator) * 0.3
    ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    boxes = []
    for (x1, y1, x2, y2), label, disk in objects:
        x1, y1, x2, y2 = (v * size for v in (x1, y1, x2, y2))
        if disk:
            mask = (xs - (x1 + x2) / 2) ** 2 + (ys - (y1 + y2) / 2) ** 2 <= ((x2 - x1) / 2) ** 2
        else:
            mask = (xs >= x1) & (xs < x2) & (ys >= y1) & (ys < y2)
        image[:, mask] = _COLOURS[label].view(3, 1)
        boxes.append([x1, y1, x2, y2])
    return image, {"boxes": torch.tensor(boxes), "labels": torch.tensor([o[1] for o in objects])}


@pytest.mark.slow
def test_yolov1_small_overfits_two_images() -> None:
    torch.manual_seed(0)
    generator, size = torch.Generator().manual_seed(0), 320
    first = _scene(generator, size, [((0.1, 0.1, 0.45, 0.4), 0, False), ((0.55, 0.5, 0.85, 0.8), 1, True),
                                     ((0.2, 0.6, 0.4, 0.9), 2, False)])
    second = _scene(generator, size, [((0.05, 0.55, 0.5, 0.95), 2, False), ((0.6, 0.1, 0.9, 0.4), 1, True)])
    images, targets = torch.stack([first[0], second[0]]), [first[1], second[1]]
    model = yolov1_small(num_classes=3)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(120):
        loss = model.loss(model(images), targets)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        detections = model.postprocess(model(images))
    for found, target in zip(detections, targets):
        top = found[: len(target["labels"])]   # the best-scored detections are exactly the objects
        iou = box_iou(target["boxes"], top.boxes) * (target["labels"][:, None] == top.labels[None])
        assert (iou.amax(1) > 0.5).all(), (iou, top)
        assert (top.scores > 0.5).all(), top.scores
