"""Drawn detections: where pixels change, labels, colours, thresholds, empty input, grids."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor

from ninshiki.structures import Detections
from ninshiki.viz.detections import (
    class_color,
    default_line_width,
    detection_grid,
    draw_detections,
    draw_ground_truth,
    save_detection_grid,
)

CLASSES = ["cat", "dog", "fox"]
GREY = 90


def changed(before: Tensor, after: Tensor) -> Tensor:
    return (before != after).any(0)   # (H, W) bool


def detections(boxes: list[list[float]], scores: list[float], labels: list[int]) -> Detections:
    return Detections(torch.tensor(boxes, dtype=torch.float32), torch.tensor(scores), torch.tensor(labels))


def test_outlines_and_labels_are_drawn_near_the_boxes_only() -> None:
    image = torch.full((3, 200, 300), GREY, dtype=torch.uint8)
    found = detections([[40, 60, 140, 160], [180, 20, 280, 180]], [0.9, 0.55], [0, 1])
    out = draw_detections(image, found, CLASSES, line_width=3, font_size=14)
    assert out.shape == (3, 200, 300) and out.dtype == torch.uint8 and torch.equal(image, torch.full_like(image, GREY))
    diff = changed(image, out)
    for x1, y1, x2, y2 in found.boxes.long().tolist():
        assert diff[y1:y2, x1:x1 + 3].all() and diff[y1:y2, x2 - 3:x2].all()         # left and right edges
        assert diff[y2 - 3:y2, x1:x2].all()                                          # bottom edge
        assert not diff[y1 + 4:y2 - 4, x1 + 4:x2 - 4].any()                          # the inside is untouched
        assert diff[y1 - 14:y1, x1:x1 + 40].float().mean() > 0.5                      # a label patch above
    near = torch.zeros_like(diff)
    for x1, y1, x2, y2 in found.boxes.long().tolist():
        near[max(0, y1 - 30):y2, x1:max(x2, x1 + 100)] = True                       # box and its label
    assert not (diff & ~near).any()


def test_label_text_and_class_colours() -> None:
    image = torch.full((3, 120, 160), GREY, dtype=torch.uint8)
    out = draw_detections(image, detections([[20, 40, 70, 100], [90, 40, 140, 100]], [0.9, 0.8], [0, 2]), CLASSES,
                          line_width=2)
    for (x1, y1, x2, _), label in [((20, 40, 70, 100), 0), ((90, 40, 140, 100), 2)]:
        edge = out[:, y1 + 10, x1].tolist()
        assert edge == list(class_color(label))                                      # outline in its class colour
        patch = out[:, y1 - 12:y1, x1:x2].reshape(3, -1).T.tolist()
        assert list(class_color(label)) in patch                                     # label background
        assert any(max(abs(a - b) for a, b in zip(p, class_color(label))) > 100 for p in patch)   # and ink on it
    assert class_color(0) != class_color(1) != class_color(2) != class_color(0)


def test_labels_differ_with_the_text() -> None:
    image = torch.full((3, 80, 120), GREY, dtype=torch.uint8)
    found = detections([[30, 40, 100, 75]], [0.91], [1])
    one = draw_detections(image, found, CLASSES)
    other = draw_detections(image, found, ["cat", "wolfhound", "fox"])
    assert not torch.equal(one, other)                                              # the name is written
    assert torch.equal(one[:, 40:], other[:, 40:])                                   # and only above the box


def test_score_threshold_and_empty_detections() -> None:
    image = torch.randint(0, 256, (3, 50, 60), dtype=torch.uint8)
    low = detections([[5, 5, 40, 40]], [0.1], [0])
    assert torch.equal(draw_detections(image, low, CLASSES), image)
    assert not torch.equal(draw_detections(image, low, CLASSES, score_threshold=0.05), image)
    out = draw_detections(image, Detections.empty(), CLASSES)
    assert torch.equal(out, image) and out.data_ptr() != image.data_ptr()           # an equal copy


def test_gray_input_boxes_past_the_edges_and_unknown_labels() -> None:
    gray = torch.full((1, 40, 50), 128, dtype=torch.uint8)
    out = draw_detections(gray, detections([[-10, -5, 70, 60]], [1.0], [7]), CLASSES, line_width=1)
    assert out.shape == (3, 40, 50)
    assert changed(gray.expand(3, -1, -1), out)[:, 0].all() and changed(gray.expand(3, -1, -1), out)[:, 49].all()
    with pytest.raises(TypeError, match="uint8"):
        draw_detections(gray.float(), Detections.empty(), CLASSES)


def test_ground_truth_is_drawn_with_names() -> None:
    image = torch.full((3, 100, 100), GREY, dtype=torch.uint8)
    out = draw_ground_truth(image, torch.tensor([[20.0, 30.0, 80.0, 90.0]]), torch.tensor([1]), CLASSES, line_width=2)
    assert changed(image, out)[30:90, 20].all() and changed(image, out)[15:30, 20:40].any()
    assert torch.equal(draw_ground_truth(image, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), CLASSES), image)
    with pytest.raises(ValueError, match="boxes of shape"):
        draw_ground_truth(image, torch.zeros(2, 4), torch.tensor([1]), CLASSES)


def test_default_line_width_scales_with_the_image() -> None:
    assert default_line_width(48, 64) == 1 and default_line_width(480, 640) == 2 and default_line_width(1080, 1920) == 4


def test_grid_of_images_of_different_sizes(tmp_path: Path, open_png) -> None:
    images = [torch.full((3, 60, 100), GREY, dtype=torch.uint8), torch.full((3, 90, 30), 200, dtype=torch.uint8),
              torch.full((1, 50, 50), 10, dtype=torch.uint8)]
    found = [detections([[10, 10, 50, 50]], [0.9], [0]), Detections.empty(), detections([[5, 5, 45, 45]], [0.3], [2])]
    grid = detection_grid(images, found, CLASSES, ncols=2, cell=64, padding=4)
    assert grid.shape == (3, 2 * 68 + 4, 2 * 68 + 4) and grid.dtype == torch.uint8
    first = grid[:, 4:68, 4:68]
    assert (first[:, 40:, :] == 114).all()                                         # the letterbox pad below
    assert changed(torch.full_like(first, GREY), first)[6:32, 6].all()               # the box, scaled by 0.64
    path = save_detection_grid(images, found, CLASSES, tmp_path / "grid.png", cell=64)
    assert open_png(path).size == (2 * 68 + 4, 2 * 68 + 4)
    with pytest.raises(ValueError, match="one Detections per image"):
        detection_grid(images, found[:2], CLASSES)
