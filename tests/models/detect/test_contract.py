"""The detector contract (DESIGN.md, contract 2) checked over every registered detector."""
from __future__ import annotations

import pytest
import torch

import ninshiki
from ninshiki.models.contracts import Detector
from ninshiki.registry import build, model_info
from ninshiki.structures import Detections

# Classical detectors (fit, not trained) have their own contract test in tests/models/classical.
DETECTORS = [n for n in ninshiki.list_models(task="detect") if not model_info(n).classical]
NUM_CLASSES = 3
HEAVY = 20_000_000   # parameters; backpropagating through these takes ~10 s on 2 cores: slow tests only


def _parameters(name: str) -> int:
    with torch.device("meta"):          # shapes only: no memory, no initialisation
        return sum(p.numel() for p in build(name, num_classes=NUM_CLASSES).parameters())


def _cases() -> list:
    cases = []
    for name in DETECTORS:
        heavy = _parameters(name) > HEAVY
        cases.append(pytest.param(name, True, id=f"{name}-train", marks=[pytest.mark.slow] if heavy else []))
        cases.append(pytest.param(name, False, id=f"{name}-eval"))
    return cases


def _targets(size: int) -> list[dict[str, torch.Tensor]]:
    boxes = torch.tensor([[0.1, 0.2, 0.5, 0.6], [0.4, 0.4, 0.9, 0.8]]) * size
    return [{"boxes": boxes, "labels": torch.tensor([0, 2])},
            {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]   # a background image


_BUILT: dict[str, torch.nn.Module] = {}


def _detector(name: str) -> tuple[str, torch.nn.Module]:
    if name not in _BUILT:            # build each once per test process: the large ones take seconds
        torch.manual_seed(0)
        _BUILT[name] = build(name, num_classes=NUM_CLASSES)
    return name, _BUILT[name]


def test_there_are_detectors() -> None:
    assert DETECTORS


@pytest.mark.parametrize("name", DETECTORS)
def test_attributes(name: str) -> None:
    name, model = _detector(name)
    assert isinstance(model, Detector), name
    assert model.num_classes == NUM_CLASSES
    assert model_info(name).task == "detect"
    for module in model.classifier_names:
        assert model.get_submodule(module) is not None


@pytest.mark.parametrize(("name", "training"), _cases())
def test_one_raw_type_loss_and_postprocess(name: str, training: bool) -> None:
    name, model = _detector(name)
    _, height, width = model_info(name).test_input
    images = torch.rand(2, 3, height, width)
    targets = _targets(min(height, width))
    model.train(training)
    raw = model(images, targets)
    losses = model.loss(raw, targets)
    assert torch.isfinite(losses["loss"]), (name, losses)
    if training:
        losses["loss"].backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters()), name
        model.zero_grad(set_to_none=True)
    model.eval()
    with torch.no_grad():
        raw_eval = model(images)
    assert type(raw_eval) is type(raw), name
    model.score_threshold = 0.0
    detections = model.postprocess(raw_eval, [(height, width), (height // 2, width // 2)])
    assert len(detections) == 2
    for det, (h, w) in zip(detections, [(height, width), (height // 2, width // 2)]):
        assert isinstance(det, Detections)
        assert len(det) <= model.max_detections
        if len(det):
            assert det.boxes[:, 0].min() >= 0 and det.boxes[:, 2].max() <= w and det.boxes[:, 3].max() <= h
            assert (det.scores >= 0).all() and (det.scores <= 1).all()
            assert det.labels.min() >= 0 and det.labels.max() < NUM_CLASSES
            assert (det.scores[:-1] >= det.scores[1:]).all()
