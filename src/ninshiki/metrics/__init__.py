"""Metrics: each one is `reset / update / compute -> dict[str, float]`, with no global state."""
from __future__ import annotations

from ninshiki.metrics.classification import ClassificationMetric, topk_predictions

__all__ = ["ClassificationMetric", "topk_predictions"]
