"""The detector contract (DESIGN.md, contract 2) with masks, checked over every registered instance segmenter."""
from __future__ import annotations

import pytest
import torch

import ninshiki
import ninshiki.models.instance.mask_rcnn  # registers the instance models until models/__init__ imports them
from ninshiki.models.contracts import Detector
from ninshiki.registry import build, model_info
from ninshiki.structures import Detections

SEGMENTERS = ninshiki.list_models(task="instance")
NUM_CLASSES = 3
HEAVY = 20_000_000   # parameters; backpropagating through these takes ~10 s on 2 cores: slow tests only


def _parameters(name: str) -> int:
    with torch.device("meta"):          # shapes only: no memory, no initialisation
        return sum(p.numel() for p in build(name, num_classes=NUM_CLASSES).parameters())


def _cases() -> list:
    cases = []
    for name in SEGMENTERS:
        heavy = _parameters(name) > HEAVY
        cases.append(pytest.param(name, True, id=f"{name}-train", marks=[pytest.mark.slow] if heavy else []))
        cases.append(pytest.param(name, False, id=f"{name}-eval"))
    return cases


def _targets(height: int, width: int) -> list[dict[str, torch.Tensor]]:
    """A rectangle and an ellipse (dataset labels 0 and 2), and a background image."""
    boxes = torch.tensor([[0.1, 0.2, 0.5, 0.6], [0.4, 0.4, 0.9, 0.8]]) * torch.tensor([width, height] * 2)
    ys, xs = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    masks = []
    for i, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
        inside = (xs >= x1) & (xs < x2) & (ys >= y1) & (ys < y2)
        ellipse = ((2 * xs - x1 - x2) / (x2 - x1)) ** 2 + ((2 * ys - y1 - y2) / (y2 - y1)) ** 2 <= 1
        masks.append(inside if i == 0 else ellipse)
    return [{"boxes": boxes, "labels": torch.tensor([0, 2]), "masks": torch.stack(masks).to(torch.uint8)},
            {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
             "masks": torch.zeros(0, height, width, dtype=torch.uint8)}]


_BUILT: dict[str, torch.nn.Module] = {}


def _segmenter(name: str) -> tuple[str, torch.nn.Module]:
    if name not in _BUILT:            # build each once per test process: the large ones take seconds
        torch.manual_seed(0)
        _BUILT[name] = build(name, num_classes=NUM_CLASSES)
    return name, _BUILT[name]


def test_there_are_instance_segmenters() -> None:
    assert SEGMENTERS


@pytest.mark.parametrize("name", SEGMENTERS)
def test_attributes(name: str) -> None:
    name, model = _segmenter(name)
    assert isinstance(model, Detector), name
    assert model.num_classes == NUM_CLASSES and 0 < model.mask_threshold < 1
    assert model_info(name).task == "instance"
    for module in model.classifier_names:
        assert model.get_submodule(module) is not None
    assert any("mask" in module for module in model.classifier_names), name


@pytest.mark.parametrize(("name", "training"), _cases())
def test_one_raw_type_loss_and_postprocess(name: str, training: bool) -> None:
    name, model = _segmenter(name)
    _, height, width = model_info(name).test_input
    images = torch.rand(2, 3, height, width)
    targets = _targets(height, width)
    model.train(training)
    raw = model(images, targets)
    losses = model.loss(raw, targets)
    assert torch.isfinite(losses["loss"]) and losses["mask"] > 0, (name, losses)
    if training:
        losses["loss"].backward()
        mask_logits = model.get_submodule(model.classifier_names[-1])
        assert mask_logits.weight.grad is not None and mask_logits.weight.grad.abs().sum() > 0, name
        model.zero_grad(set_to_none=True)
    model.eval()
    with torch.no_grad():
        raw_eval = model(images)
    assert type(raw_eval) is type(raw), name
    model.score_threshold, model.max_detections = 0.0, 8   # a few masks suffice; each costs the mask head
    sizes = [(height, width), (height // 2, width // 2)]
    detections = model.postprocess(raw_eval, sizes)
    assert len(detections) == 2
    for det, (h, w) in zip(detections, sizes):
        assert isinstance(det, Detections) and 0 < len(det) <= model.max_detections
        assert det.masks is not None and det.masks.dtype == torch.bool and det.masks.shape == (len(det), h, w)
        assert det.boxes[:, 0].min() >= 0 and det.boxes[:, 2].max() <= w and det.boxes[:, 3].max() <= h
        assert (det.scores >= 0).all() and (det.scores <= 1).all() and (det.scores[:-1] >= det.scores[1:]).all()
        assert det.labels.min() >= 0 and det.labels.max() < NUM_CLASSES
