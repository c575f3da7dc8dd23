"""Details of the ImageNet networks beyond the contract: GoogLeNet's heads, ResNet's features, first layers."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from ninshiki.models import create_model
from ninshiki.structures import ClassifierOutput


def test_googlenet_auxiliary_heads_run_in_training_only() -> None:
    torch.manual_seed(0)
    model = create_model("googlenet", num_classes=5)
    x = torch.rand(2, 3, 64, 64)
    train_out = model.train()(x)
    with torch.no_grad():
        eval_out = model.eval()(x)
    assert isinstance(train_out, ClassifierOutput) and len(train_out.aux_logits) == 2
    assert all(a.shape == (2, 5) for a in train_out.aux_logits)
    assert isinstance(eval_out, ClassifierOutput) and eval_out.aux_logits == ()


def test_googlenet_without_aux_heads() -> None:
    model = create_model("googlenet", num_classes=5, aux_logits=False)
    assert model.classifier_names == ("fc",) and model.aux1 is None and model.aux2 is None
    assert model.train()(torch.rand(2, 3, 64, 64)).aux_logits == ()


def test_googlenet_transform_input_needs_rgb() -> None:
    with pytest.raises(ValueError, match="in_channels=1"):
        create_model("googlenet", in_channels=1, transform_input=True)


@pytest.mark.parametrize("name, channels", [("resnet18", (64, 128, 256, 512)), ("resnet50", (256, 512, 1024, 2048))])
def test_resnet_features_are_the_four_stages(name: str, channels: tuple[int, ...]) -> None:
    model = create_model(name)
    assert [(i.channels, i.stride, i.name) for i in model.feature_info] == [
        (c, s, f"layer{k}") for k, (c, s) in enumerate(zip(channels, (4, 8, 16, 32)), start=1)]


def test_dilated_resnet_keeps_stride_8() -> None:
    # PSPNet's backbone: layer3 and layer4 dilated instead of strided.
    model = create_model("resnet50", replace_stride_with_dilation=(False, True, True)).eval()
    with torch.no_grad():
        features = model.forward_features(torch.rand(1, 3, 64, 64))
    assert [i.stride for i in model.feature_info] == [4, 8, 8, 8]
    assert [f.shape[-1] for f in features] == [16, 8, 8, 8]


@pytest.mark.parametrize("name, first", [("alexnet", "features.0"), ("vgg11", "features.0"),
                                         ("googlenet", "conv1.conv"), ("resnet18", "conv1")])
def test_gray_input_replaces_only_the_first_convolution(name: str, first: str) -> None:
    with torch.device("meta"):                              # shapes only
        rgb, gray = create_model(name), create_model(name, in_channels=1)
    conv, reference = gray.get_submodule(first), rgb.get_submodule(first)
    assert isinstance(conv, nn.Conv2d) and conv.in_channels == 1 and gray.first_conv == first
    for attribute in ("out_channels", "kernel_size", "stride", "padding", "dilation", "groups"):
        assert getattr(conv, attribute) == getattr(reference, attribute)
    assert (conv.bias is None) == (reference.bias is None)
    a, b = rgb.state_dict(), gray.state_dict()
    assert [k for k in a if a[k].shape != b[k].shape] == [f"{first}.weight"]
