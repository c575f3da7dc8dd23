"""One training epoch and one evaluation pass. Nothing here writes files."""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ninshiki.engine.batches import Batch, Normalizer
from ninshiki.engine.runtime import Runtime, all_reduce_sum
from ninshiki.tasks.classify import ClassifyTask

if TYPE_CHECKING:
    from ninshiki.engine.detect_loop import DetectStepContext

CHECK_EVERY = 10   # steps between host syncs to check the loss is finite (a sync per step stalls a GPU)


class NonFiniteLossError(FloatingPointError):
    pass


@dataclass
class StepContext:
    """What a training step needs besides the batch."""
    model: nn.Module
    task: ClassifyTask
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    normalizer: Normalizer
    runtime: Runtime
    clip_grad: float | None = None
    ema: torch.optim.swa_utils.AveragedModel | None = None
    augment: Callable[[Tensor], Tensor] | None = None


def check_finite(recent: list[Tensor], first_step: int, epoch: int) -> None:
    values = torch.stack(recent).tolist()
    for offset, value in enumerate(values):
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f"loss became {value} at step {first_step + offset} (epoch {epoch + 1}); stopping. "
                "Try a lower --lr, --clip-grad 1.0 or --amp off. Checkpoints from earlier epochs are kept.")


def train_step(ctx: StepContext, batch: Batch) -> dict[str, Tensor]:
    """One optimizer step on one batch; returns the detached losses."""
    images = batch.images if ctx.augment is None else ctx.augment(batch.images)
    inputs = ctx.normalizer(images, channels_last=ctx.runtime.channels_last)
    with ctx.runtime.autocast():
        losses = ctx.task.loss(ctx.model(inputs), batch.labels)
    optimizer_step(ctx, losses["loss"], ema_source=ctx.model)
    return {k: v.detach().float() for k, v in losses.items()}


def optimizer_step(ctx: StepContext | DetectStepContext, loss: Tensor, *, ema_source: nn.Module) -> None:
    """Backpropagate `loss`, clip, step the optimizer and the per-iteration schedule, update the EMA."""
    ctx.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if ctx.clip_grad:
        torch.nn.utils.clip_grad_norm_(ctx.model.parameters(), ctx.clip_grad)
    ctx.optimizer.step()
    ctx.scheduler.step()
    if ctx.ema is not None:
        ctx.ema.update_parameters(ema_source)


def _mean_over_ranks(sums: dict[str, Tensor], seen: int, device: torch.device) -> dict[str, float]:
    keys = sorted(sums)
    totals = all_reduce_sum(torch.stack([sums[k] for k in keys] + [torch.tensor(float(seen), device=device)]))
    count = max(float(totals[-1]), 1.0)
    return {f"train_{k}": float(v) / count for k, v in zip(keys, totals[:-1])} | {"_count": count}


def train_one_epoch(ctx: StepContext, batches: Iterable[Batch], *, epoch: int, global_step: int,
                    progress=None) -> tuple[dict[str, float], int, list[str]]:
    """Returns (mean losses and throughput, the global step after the epoch, skipped-file messages)."""
    ctx.model.train()
    sums: dict[str, Tensor] = {}
    seen, recent, skipped = 0, [], []
    start = time.perf_counter()
    for batch in batches:
        skipped.extend(batch.skipped)
        losses = train_step(ctx, batch)
        n = batch.labels.shape[0]
        for key, value in losses.items():
            sums[key] = sums.get(key, 0) + value * n
        seen += n
        global_step += 1
        recent.append(losses["loss"])
        if len(recent) == CHECK_EVERY:
            check_finite(recent, global_step - len(recent) + 1, epoch)
            recent = []
            if progress is not None:
                lr = ctx.scheduler.get_last_lr()[0]
                progress.set_postfix(loss=f"{float(sums['loss']) / seen:.4f}", lr=f"{lr:.3g}")
        if progress is not None:
            progress.update(1)
    if recent:
        check_finite(recent, global_step - len(recent) + 1, epoch)
    result = _mean_over_ranks(sums, seen, ctx.runtime.device)
    result["train_images_per_s"] = result.pop("_count") / max(time.perf_counter() - start, 1e-9)
    return result, global_step, skipped


def predict_logits(model: nn.Module, task: ClassifyTask, inputs: Tensor, runtime: Runtime, *,
                   flip_tta: bool = False) -> Tensor:
    """Float logits (B, K); with `flip_tta`, the mean of the logits of each image and its mirror image."""
    with runtime.autocast():
        logits = task.logits(model(inputs)).float()
        if flip_tta:
            logits = (logits + task.logits(model(inputs.flip(-1))).float()) / 2
    return logits


def evaluate_batches(model: nn.Module, task: ClassifyTask, batches: Iterable[Batch], normalizer: Normalizer,
                     runtime: Runtime, metric, *, flip_tta: bool = False) -> tuple[float, list[str]]:
    """Fill `metric` (reduced across ranks) and return (mean loss over all ranks, skipped-file messages)."""
    model.eval()
    metric.reset()
    loss_sum = torch.zeros((), device=runtime.device, dtype=torch.float64)
    count = torch.zeros((), device=runtime.device, dtype=torch.float64)
    skipped: list[str] = []
    for batch in batches:
        skipped.extend(batch.skipped)
        inputs = normalizer(batch.images, channels_last=runtime.channels_last)
        logits = predict_logits(model, task, inputs, runtime, flip_tta=flip_tta)
        # Plain cross-entropy (no label smoothing), so `train` and `val` report the same loss.
        loss_sum += F.cross_entropy(logits, batch.labels, reduction="sum").double()
        count += batch.labels.shape[0]
        metric.update(logits, batch.labels)
    metric.all_reduce()
    totals = all_reduce_sum(torch.stack([loss_sum, count]))
    return float(totals[0] / totals[1].clamp(min=1)), skipped
