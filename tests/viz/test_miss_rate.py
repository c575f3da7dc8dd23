"""Miss rate against FPPI figure from DetectionMetric.curves()."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ninshiki.metrics.detection import DetectionMetric
from ninshiki.viz.miss_rate import save_miss_rate_curves

from .test_pr_curves import noisy_metric


@pytest.mark.parametrize("num_classes", [2, 25])
def test_writes_a_png(tmp_path: Path, open_png, num_classes: int) -> None:
    path = save_miss_rate_curves(noisy_metric(num_classes, seed=1).curves(), tmp_path / "out" / "miss_rate.png")
    image = open_png(path)
    assert image.mode == "RGB" and image.size == (700, 550)
    assert np.asarray(image).std() > 10


def test_empty_metric_still_draws(tmp_path: Path, open_png) -> None:
    assert open_png(save_miss_rate_curves(DetectionMetric(["a"]).curves(), tmp_path / "m.png")).size == (700, 550)
