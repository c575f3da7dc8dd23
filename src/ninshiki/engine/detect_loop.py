"""One detection training epoch and one evaluation pass. Nothing here writes files.

The detector contract (models/contracts.py) gives one raw output in training and evaluation mode, so
evaluation runs each batch once and gets both the validation loss and the detections from it.

Instance masks (Mask R-CNN) are mapped back to each original image and stored as COCO RLE
(`EvalResult.rles`), not as bool planes: 100 detections on a 640 x 480 image are 30 MB of bool masks but
some tens of KB of RLE, which is also what the mask metric and the COCO result file consume. The decoded
masks stay on the detections only when asked (`keep_masks`, for drawing a few images).
"""
from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ninshiki.engine.loop import CHECK_EVERY, check_finite, optimizer_step
from ninshiki.engine.runtime import Runtime
from ninshiki.structures import Detections


@dataclass
class DetectStepContext:
    """What a detection training step needs besides the batch."""
    model: nn.Module                      # what the step calls: maybe DDP-wrapped or compiled
    bare: nn.Module                       # its loss() and postprocess()
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    runtime: Runtime
    clip_grad: float | None = None
    ema: torch.optim.swa_utils.AveragedModel | None = None


@dataclass
class EvalResult:
    """Detections per dataset index, in original-image pixels, and the mean validation losses."""
    detections: dict[int, Detections] = field(default_factory=dict)
    # Instance segmenters: per dataset index, one compressed COCO RLE (counts a str) per detection, in
    # original-image pixels (`metrics.instance.encode_masks`); empty for box-only detectors.
    rles: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    losses: dict[str, float] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0
    metric: Any = None                    # the DetectionMetric filled with these detections, once computed


def _inputs(images: Tensor, runtime: Runtime) -> Tensor:
    return images.contiguous(memory_format=torch.channels_last) if runtime.channels_last else images


def train_step(ctx: DetectStepContext, images: Tensor, targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """One optimizer step; returns the detached named losses."""
    with ctx.runtime.autocast():
        raw = ctx.model(_inputs(images, ctx.runtime), targets)
        losses = ctx.bare.loss(raw, targets)
    optimizer_step(ctx, losses["loss"], ema_source=ctx.bare)
    return {name: value.detach().float() for name, value in losses.items()}


def train_one_epoch(ctx: DetectStepContext, batches: Iterable, *, epoch: int, global_step: int,
                    progress=None, deadline: float | None = None) -> tuple[dict[str, float], int, list[str], bool]:
    """(mean losses as train_<name>, images/s; the new global step; skipped files; stopped at the deadline)."""
    ctx.model.train()
    sums: dict[str, Tensor] = {}
    recent: list[Tensor] = []
    images_seen, steps, skipped, stopped = 0, 0, [], False
    start = time.perf_counter()
    for batch in batches:
        skipped += batch.skipped
        if len(batch) == 0:               # every file of the batch was unreadable
            continue
        batch = batch.to(ctx.runtime.device)
        losses = train_step(ctx, batch.images, batch.targets)
        for name, value in losses.items():
            sums[name] = sums.get(name, 0.0) + value
        recent.append(losses["loss"])
        steps += 1
        images_seen += batch.images.shape[0]
        if len(recent) == CHECK_EVERY:
            check_finite(recent, global_step + steps - len(recent), epoch)
            recent = []
        if progress is not None:
            progress.update(1)
            if steps % CHECK_EVERY == 0:
                progress.set_postfix(loss=f"{float(losses['loss']):.3f}", refresh=False)
        if deadline is not None and time.perf_counter() > deadline:
            stopped = True
            break
    if recent:
        check_finite(recent, global_step + steps - len(recent), epoch)
    elapsed = time.perf_counter() - start
    row = {f"train_{name}": float(value) / max(steps, 1) for name, value in sums.items()}
    row["train_images_per_s"] = images_seen / elapsed if elapsed > 0 else 0.0
    return row, global_step + steps, skipped, stopped


@torch.no_grad()
def evaluate_detector(model: nn.Module, batches: Iterable, runtime: Runtime, *, with_loss: bool = True,
                      progress=None, keep_masks: bool = False) -> EvalResult:
    """Detections of every image (mapped back through each sample's letterbox) and mean validation losses.

    `model` is the bare detector (or its EMA copy) with `loss` and `postprocess`; its score threshold,
    NMS IoU and detection cap are whatever the caller set on it. When its detections carry masks (over the
    valid input region, bool or probabilities), they are mapped back to the original image
    (`Letterbox.masks_to_original`) and encoded into `EvalResult.rles`; with `keep_masks` the detections
    also keep them as (N, H0, W0) bool tensors, else their `masks` is None.
    """
    model.eval()
    result, sums, count = EvalResult(), {}, 0
    start = time.perf_counter()
    for batch in batches:
        result.skipped += batch.skipped
        if not batch.letterboxes:
            continue
        batch = batch.to(runtime.device)
        with runtime.autocast():
            raw = model(_inputs(batch.images, runtime), batch.targets if with_loss else None)
            if with_loss:
                for name, value in model.loss(raw, batch.targets).items():
                    sums[name] = sums.get(name, 0.0) + value.float() * len(batch.targets)
                count += len(batch.targets)
        size = batch.images.shape[-2:]
        sizes = [box.valid_size(tuple(size)) for box in batch.letterboxes]
        for index, box, det in zip(batch.indices, batch.letterboxes, model.postprocess(raw, sizes)):
            masks = None
            if det.masks is not None:
                masks = box.masks_to_original(det.masks).to("cpu")                 # (N, H0, W0) bool
                result.rles[index] = _encode(masks)
            det = Detections(det.boxes, det.scores, det.labels).to("cpu")       # the masks are moved above
            result.detections[index] = Detections(box.to_original(det.boxes.float()), det.scores.float(), det.labels,
                                                  masks if keep_masks else None)
        if progress is not None:
            progress.update(1)
    result.losses = {name: float(value) / max(count, 1) for name, value in sums.items()}
    result.seconds = time.perf_counter() - start
    return result


def _encode(masks: Tensor) -> list[dict[str, Any]]:
    from ninshiki.metrics.instance import encode_masks  # faster-coco-eval: imported only for instance masks

    return encode_masks(masks)
