"""Per-class bars."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ninshiki.metrics import ClassificationMetric
from ninshiki.viz.per_class import save_per_class_bars


def test_bars_from_a_metric_table(tmp_path: Path, open_png) -> None:
    metric = ClassificationMetric(5, class_names=["airplane", "car", "bird", "cat", "deer"])
    metric.update(torch.randn(40, 5, generator=torch.Generator().manual_seed(0)), torch.arange(40) % 5)
    image = open_png(save_per_class_bars(metric.per_class_table(), tmp_path / "bars.png", title="val"))
    assert image.mode == "RGB" and image.size == (800, 300)       # 8 x (1.5 + 0.5 * 3) inches


def test_many_classes_show_only_the_worst(tmp_path: Path, open_png) -> None:
    table = [{"class": str(i), "recall": i / 100, "precision": 0.5} for i in range(100)]
    image = open_png(save_per_class_bars(table, tmp_path / "bars.png", max_classes=10))
    assert image.size == (800, 400)                                # 10 bars: 1.5 + 0.5 * 5 inches


def test_bad_tables_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="empty"):
        save_per_class_bars([], tmp_path / "bars.png")
    with pytest.raises(ValueError, match="precision"):
        save_per_class_bars([{"class": "a", "recall": 1.0}], tmp_path / "bars.png")
