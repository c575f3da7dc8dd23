"""`ninshiki instance train|val|predict`: Mask R-CNN through the detection commands' code.

An instance segmenter is a detector whose samples carry each object's mask and whose detections return one;
its validation reports COCO box AP (`map`, `map50`, ...) and mask AP (`mask_map`, `mask_map50`, ...).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ninshiki.config_segment import InstanceEvalConfig, InstancePredictConfig, InstanceTrainConfig
from ninshiki.engine.detect_trainer import EpochCallback


def train(config: InstanceTrainConfig, *, callbacks: Sequence[EpochCallback] = ()) -> dict[str, float]:
    """Train an instance segmenter; returns the best validation's box and mask metrics (OUT/metrics.json)."""
    from ninshiki.api.detect_train import train as train_detector

    return train_detector(config, callbacks=callbacks, task="instance")


def evaluate(config: InstanceEvalConfig) -> dict[str, float]:
    """Box and mask COCO AP of `config.weights` on a split; returns what OUT/metrics.json holds."""
    from ninshiki.api.detect_eval import evaluate as evaluate_detector

    return evaluate_detector(config, task="instance")


def predict(config: InstancePredictConfig) -> list[dict[str, Any]]:
    """Objects with their masks (COCO results with RLE segmentations) and drawn images."""
    from ninshiki.api.detect_predict import predict as predict_detections

    return predict_detections(config, task="instance")
