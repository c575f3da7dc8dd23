"""The detector contract (DESIGN.md, contract 2) checked over every registered detector."""
from __future__ import annotations

import pytest
import torch

import ninshiki
from ninshiki.models.contracts import Detector
from ninshiki.registry import build, model_info
from ninshiki.structures import Detections

DETECTORS = ninshiki.list_models(task="detect")
NUM_CLASSES = 3


def _targets(size: int) -> list[dict[str, torch.Tensor]]:
    boxes = torch.tensor([[0.1, 0.2, 0.5, 0.6], [0.4, 0.4, 0.9, 0.8]]) * size
    return [{"boxes": boxes, "labels": torch.tensor([0, 2])},
            {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]   # a background image


@pytest.fixture(scope="module", params=DETECTORS)
def detector(request: pytest.FixtureRequest) -> tuple[str, torch.nn.Module]:
    torch.manual_seed(0)
    return request.param, build(request.param, num_classes=NUM_CLASSES)


def test_there_are_detectors() -> None:
    assert DETECTORS


def test_attributes(detector: tuple[str, torch.nn.Module]) -> None:
    name, model = detector
    assert isinstance(model, Detector), name
    assert model.num_classes == NUM_CLASSES
    assert model_info(name).task == "detect"
    for module in model.classifier_names:
        assert model.get_submodule(module) is not None


@pytest.mark.parametrize("training", [True, False])
def test_one_raw_type_loss_and_postprocess(detector: tuple[str, torch.nn.Module], training: bool) -> None:
    name, model = detector
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
