"""Segmentation pictures: colours at known pixels, legends of the classes shown, sizes, atomic files."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ninshiki.metrics.segmentation import SegmentationMetric
from ninshiki.viz.segmentation import (
    IGNORE_COLOUR,
    colourise,
    legend_entries,
    overlay,
    save_class_iou_bars,
    save_overlay,
    save_segmentation_grid,
)

CLASSES = ["background", "cat", "dog", "bird"]
MAGENTA = (255, 0, 255)
COLOURS = [(0, 0, 0), MAGENTA, (0, 200, 0), (0, 0, 200)]


def label_map() -> np.ndarray:
    labels = np.zeros((8, 12), np.int64)   # background, a cat block, one ignored pixel
    labels[2:6, 3:9] = 1
    labels[0, 0] = 255
    return labels


def test_colourise_uses_the_voc_palette_and_the_void_colour() -> None:
    labels = torch.tensor([[0, 1, 2], [15, 255, 3]])
    rgb = colourise(labels)
    assert rgb.shape == (2, 3, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0].tolist() == [0, 0, 0]          # VOC background
    assert rgb[0, 1].tolist() == [128, 0, 0]        # VOC aeroplane
    assert rgb[0, 2].tolist() == [0, 128, 0]        # VOC bicycle
    assert rgb[1, 0].tolist() == [192, 128, 128]    # VOC person
    assert tuple(rgb[1, 1]) == IGNORE_COLOUR == (224, 224, 192)
    custom = colourise(label_map(), COLOURS)
    assert tuple(custom[3, 4]) == MAGENTA and tuple(custom[7, 11]) == (0, 0, 0) and tuple(custom[0, 0]) == IGNORE_COLOUR
    with pytest.raises(ValueError, match=r"values \[4\] without a colour"):
        colourise(np.array([[0, 4]]), COLOURS)
    with pytest.raises(ValueError, match="integer class indices"):
        colourise(np.zeros((2, 2), np.float32))


def test_overlay_blends_objects_only() -> None:
    image = np.full((8, 12, 3), 100, np.uint8)
    out = overlay(image, label_map(), COLOURS, alpha=0.5)
    assert out[3, 4].tolist() == [178, 50, 178]     # 0.5 * 100 + 0.5 * (255, 0, 255), rounded half to even
    assert out[7, 11].tolist() == [100, 100, 100]   # background is not tinted
    assert out[0, 0].tolist() == [100, 100, 100]    # nor are ignored pixels
    tinted_background = overlay(torch.full((1, 8, 12), 100, dtype=torch.uint8), label_map(), COLOURS,
                                alpha=0.25, background=None)
    assert tinted_background[7, 11].tolist() == [75, 75, 75]   # 0.75 * 100 + 0.25 * 0
    with pytest.raises(ValueError, match=r"labels of shape \(8, 12\) for an image of \(8, 11\)"):
        overlay(image[:, :11], label_map(), COLOURS)
    with pytest.raises(TypeError, match="uint8"):
        overlay(torch.zeros(3, 8, 12), label_map(), COLOURS)


def test_legend_lists_only_the_classes_shown() -> None:
    truth, pred = label_map(), np.full((8, 12), 3)
    entries = legend_entries([truth, pred], CLASSES, COLOURS)
    assert entries == [("background", (0, 0, 0)), ("cat", MAGENTA), ("bird", (0, 0, 200)), ("ignore", IGNORE_COLOUR)]
    assert legend_entries([pred], CLASSES, COLOURS) == [("bird", (0, 0, 200))]        # no "dog": not shown
    assert legend_entries([truth], CLASSES, COLOURS, skip=0, show_ignore=False) == [("cat", MAGENTA)]
    assert legend_entries([truth], CLASSES)[1] == ("cat", (128, 0, 0))                  # VOC colours by default
    with pytest.raises(ValueError, match=r"values \[7\] outside the 4 classes"):
        legend_entries([np.array([[7]])], CLASSES, COLOURS)


def test_grid_with_and_without_ground_truth(tmp_path: Path, open_png) -> None:
    images = [torch.full((3, 8, 12), 90, dtype=torch.uint8), np.full((8, 12, 3), 30, np.uint8)]
    truths, preds = [label_map(), label_map()], [np.full((8, 12), 2), label_map()]
    image = open_png(save_segmentation_grid(tmp_path / "a" / "grid.png", images, truths, preds, CLASSES, COLOURS,
                                            title="val"))
    assert image.mode == "RGB" and image.size == (950, 550)    # (3 * 2.5 + 2) x (2 * 2.5 + 0.5) inches
    pixels = np.asarray(image).reshape(-1, 3)
    for colour in (MAGENTA, (0, 200, 0), IGNORE_COLOUR):       # cat and ignore in the truth, dog predicted
        assert (pixels == colour).all(1).sum() > 100, colour
    alone = open_png(save_segmentation_grid(tmp_path / "b" / "grid.png", images * 5, None, preds * 5, CLASSES,
                                            max_images=3))
    assert alone.size == (700, 800)                            # (2 * 2.5 + 2) x (3 * 2.5 + 0.5): three rows drawn


def test_grid_rejects_mismatches(tmp_path: Path) -> None:
    image = np.zeros((8, 12, 3), np.uint8)
    with pytest.raises(ValueError, match=r"prediction 0 has shape \(8, 11\) but its image is \(8, 12\)"):
        save_segmentation_grid(tmp_path / "grid.png", [image], None, [np.zeros((8, 11), np.int64)], CLASSES)
    with pytest.raises(ValueError, match="1 images, 2 predictions"):
        save_segmentation_grid(tmp_path / "grid.png", [image], None, [label_map()] * 2, CLASSES)
    assert not any(tmp_path.iterdir())                         # nothing written, not even a temporary file


def test_overlay_file_keeps_the_image_and_adds_a_legend(tmp_path: Path, open_png) -> None:
    image = np.full((8, 12, 3), 100, np.uint8)
    written = np.asarray(open_png(save_overlay(tmp_path / "one" / "overlay.png", image, label_map(), CLASSES,
                                               COLOURS)))
    assert written.shape[0] == 8 and written.shape[1] > 12                 # image height; legend panel on the right
    np.testing.assert_array_equal(written[:, :12], overlay(image, label_map(), COLOURS))
    assert (written[:, 12:] == MAGENTA).all(-1).any()                       # the cat swatch
    assert not (written[:, 12:] == IGNORE_COLOUR).all(-1).any()             # ignored pixels are not tinted
    background_only = np.asarray(open_png(save_overlay(tmp_path / "two" / "overlay.png", image,
                                                       np.zeros((8, 12), np.int64), CLASSES, COLOURS)))
    np.testing.assert_array_equal(background_only, image)                  # nothing tinted: no legend


def test_iou_bars(tmp_path: Path, open_png) -> None:
    metric = SegmentationMetric(CLASSES)
    metric.update(torch.tensor([[[0, 0, 1, 2]]]), torch.tensor([[[0, 0, 1, 1]]]))   # bird: NaN
    scores = metric.compute()
    assert math.isnan(scores["iou/bird"])
    image = open_png(save_class_iou_bars(tmp_path / "one" / "iou.png", scores, title="val"))
    assert image.mode == "RGB" and image.size == (800, 250)                # 8 x (1.5 + 0.5 * ceil(4 / 2)) inches
    many = {f"class {i}": i / 30 for i in range(30)}
    assert open_png(save_class_iou_bars(tmp_path / "two" / "iou.png", many, max_classes=10)).size == (800, 400)
    with pytest.raises(ValueError, match="empty"):
        save_class_iou_bars(tmp_path / "three.png", {})
