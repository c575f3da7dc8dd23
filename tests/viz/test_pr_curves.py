"""Precision-recall figure from DetectionMetric.curves()."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ninshiki.metrics.detection import DetectionMetric, GroundTruth
from ninshiki.structures import Detections
from ninshiki.viz.pr_curves import save_pr_curves


def noisy_metric(num_classes: int, seed: int = 0) -> DetectionMetric:
    """Ten images of jittered ground truth plus clutter; the last class never has ground truth."""
    rng = np.random.default_rng(seed)
    metric = DetectionMetric([f"class {k}" for k in range(num_classes)])
    for _ in range(10):
        gt = np.concatenate([rng.uniform(0, 200, (6, 2)), rng.uniform(0, 200, (6, 2)) + 20], 1)
        gt[:, 2:] = np.maximum(gt[:, 2:], gt[:, :2] + 10)
        labels = rng.integers(0, max(num_classes - 1, 1), 6)
        det = np.concatenate([gt + rng.normal(0, 6, gt.shape), rng.uniform(0, 200, (8, 4))])
        det[:, 2:] = det[:, :2] + np.abs(det[:, 2:] - det[:, :2]) + 1
        scores = torch.from_numpy(rng.random(14).astype(np.float32))
        predicted = torch.from_numpy(np.r_[labels, rng.integers(0, num_classes, 8)])
        metric.update([Detections(torch.tensor(det, dtype=torch.float32), scores, predicted)],
                      [GroundTruth(boxes=gt, labels=labels, size=(240, 240))])
    return metric


@pytest.mark.parametrize("num_classes", [3, 25])
def test_writes_a_png(tmp_path: Path, open_png, num_classes: int) -> None:
    path = save_pr_curves(noisy_metric(num_classes).curves(), tmp_path / "out" / "pr.png")
    image = open_png(path)
    assert image.mode == "RGB" and image.size == (1200, 500)
    assert np.asarray(image).std() > 10          # something was drawn on the white background


def test_empty_metric_still_draws(tmp_path: Path, open_png) -> None:
    path = save_pr_curves(DetectionMetric(["a", "b"]).curves(), tmp_path / "pr.png")
    assert open_png(path).size == (1200, 500)
