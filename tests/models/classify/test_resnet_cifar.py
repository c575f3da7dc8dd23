"""The CIFAR ResNets of He et al. (2015), section 4.2: depth, parameter counts and option-A shortcuts."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from ninshiki.models import create_model
from ninshiki.models.classify.resnet_cifar import CifarResNet, ShortcutA

# (name, depth, parameters as printed in the paper's Table 6, exact count with 10 classes). The exact counts
# follow from the architecture: 432 + 32 for the stem, 6n 3x3 convolutions with BN, 650 for the classifier.
PAPER = [
    ("resnet20", 20, 0.27, 269_722),
    ("resnet32", 32, 0.46, 464_154),
    ("resnet44", 44, 0.66, 658_586),
    ("resnet56", 56, 0.85, 853_018),
    ("resnet110", 110, 1.7, 1_727_962),
]


@pytest.mark.parametrize("name, depth, millions, exact", PAPER)
def test_parameter_counts_match_the_paper(name: str, depth: int, millions: float, exact: int) -> None:
    model = create_model(name, num_classes=10)
    count = sum(p.numel() for p in model.parameters())
    assert count == exact
    assert round(count / 1e6, 1 if millions >= 1 else 2) == millions
    weighted = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(weighted) == depth                           # 6n + 2 layers; the shortcuts add none


def test_stages_are_16_32_64_channels_at_32_16_8_pixels() -> None:
    model = create_model("resnet20", num_classes=10).eval()
    with torch.no_grad():
        features = model.forward_features(torch.rand(2, 3, 32, 32))
    assert [tuple(f.shape[1:]) for f in features] == [(16, 32, 32), (32, 16, 16), (64, 8, 8)]
    assert [(i.channels, i.stride) for i in model.feature_info] == [(16, 1), (32, 2), (64, 4)]


def test_option_a_shortcut_subsamples_and_zero_pads() -> None:
    shortcut = ShortcutA(stride=2, extra_channels=16)
    x = torch.randn(2, 16, 7, 7)
    y = shortcut(x)
    assert y.shape == (2, 32, 4, 4) and not list(shortcut.parameters())
    torch.testing.assert_close(y[:, :16], x[:, :, ::2, ::2], atol=0, rtol=0)
    assert not y[:, 16:].any()


def test_only_the_stage_transitions_have_shortcut_modules() -> None:
    model = create_model("resnet32", num_classes=10)
    shortcuts = [name for name, m in model.named_modules() if isinstance(m, ShortcutA)]
    assert shortcuts == ["layer2.0.downsample", "layer3.0.downsample"]


@pytest.mark.parametrize("depth", [0, 21, 6])
def test_depth_must_be_6n_plus_2(depth: int) -> None:
    with pytest.raises(ValueError, match="6n \\+ 2"):
        CifarResNet(depth=depth)
