"""First-layer filter grids: layout and normalisation checked pixel by pixel."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ninshiki.viz.filters import filter_grid, first_conv, save_filter_grid


def test_four_gray_filters_land_exactly_where_documented() -> None:
    weight = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]],      # min-max -> 0, 1/3, 2/3, 1
                           [[[-1.0, 1.0], [1.0, -1.0]]],    # -> 0, 1, 1, 0
                           [[[5.0, 5.0], [5.0, 5.0]]],      # constant -> mid-gray
                           [[[0.0, 0.0], [0.0, 0.5]]]])     # -> 0, 0, 0, 1
    grid = filter_grid(weight, upscale=1, pad=1)
    # 2 x 2 tiles of 2 x 2 pixels with 1-pixel white separators around and between: 1 + 2 * (2 + 1) = 7.
    expected_gray = np.array([[255, 255, 255, 255, 255, 255, 255],
                              [255,   0,  85, 255,   0, 255, 255],
                              [255, 170, 255, 255, 255,   0, 255],
                              [255, 255, 255, 255, 255, 255, 255],
                              [255, 128, 128, 255,   0,   0, 255],
                              [255, 128, 128, 255,   0, 255, 255],
                              [255, 255, 255, 255, 255, 255, 255]], dtype=np.uint8)
    assert grid.dtype == np.uint8 and grid.shape == (7, 7, 3)
    np.testing.assert_array_equal(grid, np.repeat(expected_gray[..., None], 3, axis=2))


def test_upscale_is_nearest_neighbour_and_pad_is_respected() -> None:
    weight = torch.randn(5, 1, 3, 2)
    small, big = filter_grid(weight, upscale=1, pad=0), filter_grid(weight, upscale=4, pad=0)
    assert small.shape == (2 * 3, 3 * 2, 3)                          # 5 filters -> 3 columns, 2 rows
    np.testing.assert_array_equal(big, small.repeat(4, axis=0).repeat(4, axis=1))
    padded = filter_grid(weight, upscale=2, pad=3)
    assert padded.shape == (3 + 2 * (6 + 3), 3 + 3 * (4 + 3), 3)
    filter1 = small[0:3, 2:4].repeat(2, axis=0).repeat(2, axis=1)     # row 0, column 1 of the grid
    np.testing.assert_array_equal(padded[3:3 + 6, 3 + 7:3 + 7 + 4], filter1)
    assert (padded[:3] == 255).all() and (padded[3:9, 7:10] == 255).all()  # border and separator


def test_rgb_filters_keep_colour_and_are_normalised_jointly() -> None:
    weight = torch.zeros(1, 3, 1, 1)
    weight[0, :, 0, 0] = torch.tensor([2.0, 0.0, 1.0])                # R high, G low, B between
    np.testing.assert_array_equal(filter_grid(weight, upscale=1, pad=0)[0, 0], [255, 0, 128])


def test_more_than_three_channels_show_the_mean_of_the_first_three_in_gray() -> None:
    weight = torch.zeros(1, 5, 1, 2)
    weight[0, :3, 0, 0] = torch.tensor([1.0, 2.0, 3.0])               # mean 2
    weight[0, :3, 0, 1] = torch.tensor([0.0, 0.0, 0.0])               # mean 0
    weight[0, 3:] = 100.0                                             # ignored
    grid = filter_grid(weight, upscale=1, pad=0)
    np.testing.assert_array_equal(grid[0], [[255, 255, 255], [0, 0, 0]])


@pytest.mark.parametrize("bad, message", [(torch.zeros(3, 3, 3), "shape"), (torch.zeros(0, 3, 3, 3), "empty"),
                                          (torch.full((1, 1, 2, 2), float("nan")), "NaN")])
def test_bad_weights_are_rejected(bad: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        filter_grid(bad)
    with pytest.raises(ValueError, match="upscale"):
        filter_grid(torch.zeros(1, 1, 2, 2), upscale=0)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Sequential(nn.Linear(4, 4))
        self.features = nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 8, 5), nn.Conv2d(8, 8, 3))


def test_first_conv_follows_module_order() -> None:
    net = Net()
    assert first_conv(net) is net.features[1]


def test_first_conv_names_a_model_without_convolutions() -> None:
    with pytest.raises(ValueError, match="MultiLayer has no nn.Conv2d"):
        first_conv(type("MultiLayer", (nn.Sequential,), {})(nn.Linear(2, 2)))
    with pytest.raises(ValueError, match="not yet initialised"):
        first_conv(nn.Sequential(nn.LazyConv2d(4, 3)))


def test_save_filter_grid_writes_alexnet_conv1_sized_png(tmp_path: Path, open_png) -> None:
    model = nn.Sequential(nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU())   # AlexNet's conv1
    path = save_filter_grid(model, tmp_path / "filters.png")
    image = open_png(path)
    assert image.mode == "RGB" and image.size == (1 + 8 * (88 + 1),) * 2          # 8 x 8 filters of 11 * 8 px
    np.testing.assert_array_equal(np.asarray(image), filter_grid(model[0].weight))
