"""Open a trained classifier from its weights file and the record inside it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from ninshiki.engine import checkpoint
from ninshiki.engine.batches import Normalizer


@dataclass
class TrainedClassifier:
    model: nn.Module
    name: str
    classes: list[str]
    channels: int
    image_size: tuple[int, int]
    normalizer: Normalizer
    tta: bool = False                # trained and validated with mirror-image test-time augmentation


_TASK_NOUNS = {"classify": "a classifier", "detect": "a detector", "segment": "a semantic segmenter",
               "instance": "an instance segmenter"}


def read_task_record(weights: str, *, task: str, model: str | None) -> dict[str, Any]:
    """The weights' record, checked to be of `task` and, if the user named one, of `model`."""
    record = checkpoint.read_record(weights)
    if not record:
        raise ValueError(f"{weights}: has no ninshiki record (classes, input size, ...); "
                         f"give weights written by `ninshiki {task} train`")
    if record.get("task") != task:
        raise ValueError(f"{weights}: holds a {record.get('task')!r} model, not {_TASK_NOUNS.get(task, task)}")
    if model is not None and model != record["model"]:
        raise ValueError(f"{weights}: was trained as {record['model']!r}, but --model {model} was given")
    return record


def read_classifier_record(weights: str, model: str | None) -> dict[str, Any]:
    return read_task_record(weights, task="classify", model=model)


def load_classifier(weights: str, model: str | None = None) -> TrainedClassifier:
    from ninshiki.models.weights import create_model

    record = read_classifier_record(weights, model)
    net = create_model(record["model"], num_classes=len(record["classes"]), in_channels=record["channels"],
                       weights=weights, **record.get("model_kwargs", {}))
    return TrainedClassifier(net.eval(), record["model"], list(record["classes"]), int(record["channels"]),
                             tuple(record["image_size"]), Normalizer(tuple(record["mean"]), tuple(record["std"])),
                             bool(record.get("tta", False)))
