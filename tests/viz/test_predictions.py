"""Prediction grids."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ninshiki.viz.predictions import CORRECT, UNKNOWN, WRONG, caption, save_prediction_grid


@pytest.mark.parametrize("channels", [1, 3])
def test_grid_of_rgb_and_gray_images(tmp_path: Path, open_png, channels: int) -> None:
    images = torch.randint(0, 256, (5, channels, 24, 32), dtype=torch.uint8)
    predicted = [("cat", 0.97), ("dog", 0.51), ("cat", 0.4), ("bird", 0.99), ("dog", 0.7)]
    path = save_prediction_grid(images, predicted, tmp_path / "p.png", truth=["cat", "cat", "cat", "bird", "x"])
    image = open_png(path)
    assert image.mode == "RGB" and image.size == (3 * 200, 2 * 250)   # 5 images: 3 columns, 2 rows


def test_max_images_limits_the_grid(tmp_path: Path, open_png) -> None:
    images = torch.zeros(40, 3, 8, 8, dtype=torch.uint8)
    path = save_prediction_grid(images, [("a", 1.0)] * 40, tmp_path / "p.png", max_images=9)
    assert open_png(path).size == (3 * 200, 3 * 250)


def test_captions_and_colours() -> None:
    assert caption(("cat", 0.974), None) == ("cat 0.97", UNKNOWN)
    assert caption(("cat", 0.974), "cat") == ("cat 0.97", CORRECT)
    assert caption(("cat", 0.974), "dog") == ("cat 0.97\n(true: dog)", WRONG)


def test_bad_input_is_rejected(tmp_path: Path) -> None:
    images = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    with pytest.raises(TypeError, match="uint8"):
        save_prediction_grid(images.float(), [("a", 1.0)] * 2, tmp_path / "p.png")
    with pytest.raises(ValueError, match="C in"):
        save_prediction_grid(torch.zeros(2, 2, 8, 8, dtype=torch.uint8), [("a", 1.0)] * 2, tmp_path / "p.png")
    with pytest.raises(ValueError, match="1 predictions for 2 images"):
        save_prediction_grid(images, [("a", 1.0)], tmp_path / "p.png")
    with pytest.raises(ValueError, match="3 true labels"):
        save_prediction_grid(images, [("a", 1.0)] * 2, tmp_path / "p.png", truth=["a"] * 3)
    assert not any(tmp_path.iterdir())
