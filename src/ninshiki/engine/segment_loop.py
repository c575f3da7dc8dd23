"""One semantic-segmentation evaluation pass (training epochs use detect_loop.train_one_epoch unchanged).

Scores are computed at each image's ORIGINAL resolution, as the benchmarks (VOC, Cityscapes) define them:
the logits of the valid (unpadded) region are upsampled bilinearly to the original size before the arg-max,
and compared with the original mask, never with a resized one.
"""
from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ninshiki.data.segmentation.transforms import logits_to_original
from ninshiki.engine.runtime import Runtime


@dataclass
class SegmentEvalResult:
    """Mean validation losses, the filled metric, and the first few predictions (for pictures)."""
    losses: dict[str, float] = field(default_factory=dict)
    metric: Any = None
    predictions: dict[int, Tensor] = field(default_factory=dict)   # dataset index -> (H0, W0) uint8 classes
    images: int = 0
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0


def original_predictions(logits: Tensor, valid_sizes: list[tuple[int, int]],
                         original_sizes: list[tuple[int, int]]) -> list[Tensor]:
    """Class maps at the original resolution from padded, possibly rescaled, network logits.

    Shape:
        - logits: (B, K, H, W). Output: one (H0_i, W0_i) int64 map per image.
    """
    return [logits_to_original(logits[i], valid, original).argmax(dim=0)
            for i, (valid, original) in enumerate(zip(valid_sizes, original_sizes))]


def _inputs(images: Tensor, runtime: Runtime) -> Tensor:
    return images.contiguous(memory_format=torch.channels_last) if runtime.channels_last else images


@torch.no_grad()
def evaluate_segmenter(model: nn.Module, batches: Iterable, runtime: Runtime, metric: Any, *,
                       with_loss: bool = True, keep: int = 0, progress=None) -> SegmentEvalResult:
    """Fill `metric` (a SegmentationMetric) over `batches`; keep the first `keep` predictions.

    `model` is the bare segmenter (or its EMA copy), with `loss`.
    """
    model.eval()
    result, sums, count = SegmentEvalResult(metric=metric), {}, 0
    start = time.perf_counter()
    for batch in batches:
        result.skipped += batch.skipped
        if len(batch) == 0:
            continue
        batch = batch.to(runtime.device)
        with runtime.autocast():
            raw = model(_inputs(batch.images, runtime))
            if with_loss:
                for name, value in model.loss(raw, batch.targets).items():
                    sums[name] = sums.get(name, 0.0) + value.float() * len(batch)
                count += len(batch)
        predictions = original_predictions(raw.logits, batch.valid_sizes, batch.original_sizes)
        truths = [batch.targets[i, :h, :w] if mask is None else mask.long()     # None: not rescaled, same pixels
                  for i, ((h, w), mask) in enumerate(zip(batch.valid_sizes, batch.original_masks))]
        metric.update(predictions, truths)
        for index, prediction in zip(batch.indices, predictions):
            if len(result.predictions) < keep:
                result.predictions[index] = prediction.to("cpu", torch.uint8)
        result.images += len(batch)
        if progress is not None:
            progress.update(1)
    result.losses = {name: float(value) / max(count, 1) for name, value in sums.items()}
    result.seconds = time.perf_counter() - start
    return result
