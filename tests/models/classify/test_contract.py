"""One contract test over every registered classifier: it builds, trains (every parameter gets a gradient),
evaluates deterministically with the same output type, exposes features that agree with `feature_info`,
and round-trips its state dict through safetensors."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ninshiki.io import save_safetensors
from ninshiki.models import create_model
from ninshiki.models.contracts import Classifier
from ninshiki.registry import build, list_models, model_info
from ninshiki.structures import ClassifierOutput, split_logits

# Building and serialising VGG takes seconds per model on a CPU (its fc6 alone has 103M weights); the fast run
# keeps vgg11, every other ImageNet model and every small-input model.
SLOW = {"vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"}
NETWORKS = [n for n in list_models(task="classify") if not model_info(n).classical]   # classical: their own test
CLASSIFIERS = [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in NETWORKS]


def _loss(raw: Tensor | ClassifierOutput) -> Tensor:
    logits, aux = split_logits(raw)
    target = torch.tensor([0, 2])
    return F.cross_entropy(logits, target) + 0.3 * sum(F.cross_entropy(a, target) for a in aux)  # paper's 0.3


def test_registry_has_the_survey_classifiers() -> None:
    expected = {"alexnet", "googlenet", "resnet18", "resnet50", "resnet152", "vgg16", "vgg19", "resnet20",
                "resnet110", "vgg_small", "alexnet_small", "googlenet_small"}
    assert expected <= set(list_models(task="classify"))
    assert all(model_info(n).paper for n in list_models(task="classify"))


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifier_contract(name: str, tmp_path: Path) -> None:
    # One build serves every check: building the ImageNet models is the slow part on a CPU.
    torch.manual_seed(0)
    channels, height, width = model_info(name).test_input
    model = create_model(name, num_classes=3, in_channels=channels)
    x = torch.rand(2, channels, height, width)
    assert isinstance(model, Classifier)

    raw = _check_training_step(model, x)
    _check_evaluation(model, x, type(raw))
    _check_features(model, x)

    path = tmp_path / f"{name}.safetensors"
    save_safetensors(model.state_dict(), path)              # BN statistics moved off their init by training
    loaded = create_model(name, num_classes=3, in_channels=channels, weights=path).eval()
    with torch.no_grad():
        torch.testing.assert_close(split_logits(loaded(x))[0], split_logits(model(x))[0], atol=0, rtol=0)


def _check_training_step(model: nn.Module, x: Tensor) -> Tensor | ClassifierOutput:
    raw = model.train()(x)
    logits, aux = split_logits(raw)
    assert logits.shape == (2, 3) and all(a.shape == (2, 3) for a in aux)
    loss = _loss(raw)
    assert torch.isfinite(loss)
    loss.backward()
    without_grad = [n for n, p in model.named_parameters()
                    if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all())]
    assert not without_grad, f"no finite gradient for {without_grad[:5]}"
    return raw


def _check_evaluation(model: nn.Module, x: Tensor, train_type: type) -> None:
    model.eval()
    with torch.no_grad():
        first, second = model(x), model(x)
    assert type(first) is train_type, "the raw output type must be the same in train and eval"
    assert split_logits(first)[1] == ()
    torch.testing.assert_close(split_logits(first)[0], split_logits(second)[0], atol=0, rtol=0)


def _check_features(model: nn.Module, x: Tensor) -> None:
    captured: dict[str, Tensor] = {}
    hooks = [model.get_submodule(info.name).register_forward_hook(
                 lambda _m, _i, out, name=info.name: captured.__setitem__(name, out))
             for info in model.feature_info]
    with torch.no_grad():
        features = model.forward_features(x)
    for hook in hooks:
        hook.remove()

    assert len(features) == len(model.feature_info) > 0
    assert [i.stride for i in model.feature_info] == sorted(i.stride for i in model.feature_info)
    for feature, info in zip(features, model.feature_info):
        assert feature.shape[:2] == (2, info.channels), info
        for size, full in zip(feature.shape[2:], x.shape[2:]):
            # floor/ceil rounding; unpadded 3x3/2 pools (AlexNet) also drop a border pixel
            assert math.floor(full / info.stride) - 1 <= size <= math.ceil(full / info.stride), (info, feature.shape)
        assert torch.equal(feature, captured[info.name]), f"{info.name} does not produce the feature {info}"


@pytest.mark.parametrize("name", NETWORKS)
def test_classifier_names_are_exactly_the_class_dependent_modules(name: str) -> None:
    with torch.device("meta"):                              # shapes only: no memory, no initialisation cost
        three, five = build(name, num_classes=3), build(name, num_classes=5)
    a, b = three.state_dict(), five.state_dict()
    changed = {key.rsplit(".", 1)[0] for key in a if a[key].shape != b[key].shape}
    assert changed == set(three.classifier_names)


@pytest.mark.parametrize("name", NETWORKS)
def test_first_conv_names_the_first_convolution_in_module_order(name: str) -> None:
    # load_weights adapts `first_conv`; viz.filters draws the first Conv2d in module order: the same layer.
    with torch.device("meta"):
        model = build(name, in_channels=1)
    first = next(n for n, m in model.named_modules() if isinstance(m, nn.Conv2d))
    assert model.first_conv == first and model.get_submodule(first).in_channels == 1
