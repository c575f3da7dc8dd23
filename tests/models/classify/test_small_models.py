"""The narrow small-input networks keep the shapes their recipes and pictures rely on."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from ninshiki.models import create_model
from ninshiki.structures import ClassifierOutput


def test_vgg_small_is_three_stages_of_two_conv_bn_relu() -> None:
    model = create_model("vgg_small", num_classes=10, in_channels=1, width=32)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (1, 32, (3, 3)), (32, 32, (3, 3)), (32, 64, (3, 3)), (64, 64, (3, 3)), (64, 128, (3, 3)), (128, 128, (3, 3))]
    assert all(c.bias is None for c in convs)
    for stage in (model.stage1, model.stage2, model.stage3):
        assert [type(m) for m in stage] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU] * 2
    assert model.fc.in_features == 128 and model.dropout.p == 0.2
    # 285,984 conv weights (9 * (32 + 1024 + 2048 + 4096 + 8192 + 16384)) + 896 BN + 1,290 fc
    assert sum(p.numel() for p in model.parameters()) == 288_170


def test_vgg_small_on_fashion_mnist_sized_images() -> None:
    model = create_model("vgg_small", num_classes=10, in_channels=1).eval()
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        features, logits = model.forward_features(x), model(x)
    assert [tuple(f.shape[1:]) for f in features] == [(32, 28, 28), (64, 14, 14), (128, 7, 7)]
    assert logits.shape == (4, 10)


@pytest.mark.parametrize("batch_norm", [True, False])
def test_alexnet_small_keeps_alexnets_shape_with_a_5x5_first_layer(batch_norm: bool) -> None:
    model = create_model("alexnet_small", num_classes=10, batch_norm=batch_norm)
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.classifier if isinstance(m, nn.Linear)]
    assert len(convs) == 5 and len(linears) == 3
    assert convs[0].kernel_size == (5, 5) and convs[0].out_channels == 64 and model.first_conv == "features.0"
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.features) == 3
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.features) == (5 if batch_norm else 0)
    assert sum(isinstance(m, nn.Dropout) for m in model.classifier) == 2
    assert not any(isinstance(m, nn.LocalResponseNorm) for m in model.modules())
    with torch.no_grad():
        assert model.eval()(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_googlenet_small_has_one_auxiliary_head_in_training_only() -> None:
    torch.manual_seed(0)
    model = create_model("googlenet_small", num_classes=10)
    x = torch.rand(2, 3, 32, 32)
    train_out = model.train()(x)
    with torch.no_grad():
        eval_out = model.eval()(x)
    assert isinstance(train_out, ClassifierOutput) and isinstance(eval_out, ClassifierOutput)
    assert len(train_out.aux_logits) == 1 and train_out.aux_logits[0].shape == (2, 10)
    assert eval_out.aux_logits == () and eval_out.logits.shape == (2, 10)


def test_googlenet_small_without_aux_head() -> None:
    model = create_model("googlenet_small", num_classes=10, aux_logits=False)
    assert model.classifier_names == ("fc",)
    assert not any(name.startswith("aux1") for name, _ in model.named_parameters())
    assert model.train()(torch.rand(2, 3, 32, 32)).aux_logits == ()
