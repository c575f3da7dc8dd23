"""The segmenter contract (models/contracts.py `Segmenter`) checked over every registered semantic segmenter,
and with CRF-as-RNN on top of the smallest one."""
from __future__ import annotations

import pytest
import torch

import ninshiki
from ninshiki.models.contracts import Segmenter
from ninshiki.registry import build, model_info
from ninshiki.structures import SegmentationOutput

SEGMENTERS = ninshiki.list_models(task="segment")
NUM_CLASSES = 3
HEAVY = 20_000_000   # parameters; backpropagating through these takes many seconds on 2 cores: slow tests only


def _parameters(name: str) -> int:
    with torch.device("meta"):          # shapes only: no memory, no initialisation
        return sum(p.numel() for p in build(name, num_classes=NUM_CLASSES).parameters())


def _cases() -> list:
    cases = []
    for name in SEGMENTERS:
        heavy = _parameters(name) > HEAVY
        cases.append(pytest.param(name, True, id=f"{name}-train", marks=[pytest.mark.slow] if heavy else []))
        cases.append(pytest.param(name, False, id=f"{name}-eval", marks=[pytest.mark.slow] if heavy else []))
    return cases


def _targets(height: int, width: int) -> torch.Tensor:
    targets = torch.zeros(2, height, width, dtype=torch.int64)            # (B, H, W)
    targets[0, height // 4:height // 2, width // 4:width // 2] = 1
    targets[0, -4:, :] = 255                                              # an ignored strip
    targets[1] = 255                                                      # an image without labelled pixels
    return targets


def test_there_are_segmenters() -> None:
    assert {"fcn8s_vgg16", "segnet_vgg16", "pspnet_resnet50"} <= set(SEGMENTERS)


@pytest.mark.parametrize("name", SEGMENTERS)
def test_attributes(name: str) -> None:
    with torch.device("meta"):
        model = build(name, num_classes=NUM_CLASSES)
    assert isinstance(model, Segmenter), name
    assert model.num_classes == NUM_CLASSES and model.ignore_index == 255 and model.input_size >= 32
    assert model_info(name).task == "segment"
    for module in model.classifier_names:
        assert model.get_submodule(module) is not None


def _check(model: torch.nn.Module, name: str, training: bool, height: int, width: int) -> None:
    images = torch.rand(2, 3, height, width)
    targets = _targets(height, width)
    model.train(training)
    raw = model(images, targets)
    assert isinstance(raw, SegmentationOutput), name
    assert raw.logits.shape == (2, NUM_CLASSES, height, width), (name, raw.logits.shape)
    losses = model.loss(raw, targets)
    assert torch.isfinite(losses["loss"]), (name, losses)
    if training:
        losses["loss"].backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters()), name
        model.zero_grad(set_to_none=True)
    else:
        assert raw.aux_logits == (), name                  # auxiliary heads only in training mode
    model.eval()
    with torch.no_grad():
        raw_eval = model(images)
    assert type(raw_eval) is type(raw), name
    labels = model.postprocess(raw_eval, [(height, width), (height // 2, width - 32)])
    assert [tuple(x.shape) for x in labels] == [(height, width), (height // 2, width - 32)], name
    assert all(x.dtype == torch.int64 and int(x.min()) >= 0 and int(x.max()) < NUM_CLASSES for x in labels), name


@pytest.mark.parametrize(("name", "training"), _cases())
def test_one_raw_type_loss_and_postprocess(name: str, training: bool) -> None:
    torch.manual_seed(0)
    model = build(name, num_classes=NUM_CLASSES)
    _, height, width = model_info(name).test_input
    _check(model, name, training, height, width + 32)          # not square: height and width kept apart


@pytest.mark.parametrize("training", [True, False])
def test_crf_as_rnn_on_top_keeps_the_contract(training: bool) -> None:
    from ninshiki.models.segment.crf_rnn import with_crf

    torch.manual_seed(0)
    model = with_crf(build("fcn8s_small", num_classes=NUM_CLASSES), iterations=2)
    assert isinstance(model, Segmenter)
    _check(model, "fcn8s_small+crf", training, 64, 96)
