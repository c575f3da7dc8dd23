"""The epoch loop of a classification run: train, validate, log, checkpoint, stop early, resume.

Resuming restores the model, optimizer, scheduler, EMA and RNG states saved at the end of the last
finished epoch, and every epoch draws its batch order and augmentation from generators seeded by
(seed, epoch); so on the CPU a resumed run ends with the same weights as one never interrupted.
"""
from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ninshiki.config import TrainConfig
from ninshiki.engine import checkpoint
from ninshiki.engine.augment import augment_batch
from ninshiki.engine.batches import MemoryBatches, StreamBatches, drops_last, epoch_generator
from ninshiki.engine.logs import write_epoch_log
from ninshiki.engine.loop import StepContext, evaluate_batches, train_one_epoch
from ninshiki.engine.runtime import Runtime

EpochCallback = Callable[[int, dict[str, float]], None]


@dataclass
class Progress:
    """What survives between epochs, saved in train_state.safetensors."""
    epoch: int = 0                       # epochs finished
    global_step: int = 0
    best_top1: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best_metrics: dict[str, float] = field(default_factory=dict)
    best_confusion: torch.Tensor | None = None


@dataclass
class TrainSetup:
    config: TrainConfig
    runtime: Runtime
    model: nn.Module                     # what the step calls: maybe DDP-wrapped or compiled
    bare_model: nn.Module                # its parameters and state dict
    ctx: StepContext
    train_batches: MemoryBatches | StreamBatches
    val_batches: MemoryBatches | StreamBatches | None
    class_names: list[str]
    record: dict[str, Any]               # written into every weights file
    skipped: list[str] = field(default_factory=list)


def _eval_model(setup: TrainSetup) -> nn.Module:
    return setup.ctx.ema.module if setup.ctx.ema is not None else setup.bare_model


def _save_state(setup: TrainSetup, progress: Progress, out: Path) -> None:
    ctx = setup.ctx
    state = {
        "progress": dict(vars(progress)),
        "model": setup.bare_model.state_dict(),
        "optimizer": ctx.optimizer.state_dict(),
        "scheduler": ctx.scheduler.state_dict(),
        "ema": ctx.ema.state_dict() if ctx.ema is not None else None,
        "rng": checkpoint.rng_states(),
    }
    checkpoint.save_train_state(out / "train_state.safetensors", state)


def restore(setup: TrainSetup, run_dir: Path) -> Progress:
    """Load train_state.safetensors of `run_dir` into the setup; returns where to continue."""
    state = checkpoint.load_train_state(run_dir / "train_state.safetensors")
    setup.bare_model.load_state_dict(state["model"])
    setup.ctx.optimizer.load_state_dict(state["optimizer"])
    setup.ctx.scheduler.load_state_dict(state["scheduler"])
    if setup.ctx.ema is not None:
        if state["ema"] is None:
            raise ValueError(f"{run_dir}: the run being resumed had no EMA; resume without --ema")
        setup.ctx.ema.load_state_dict(state["ema"])
    checkpoint.restore_rng_states(state["rng"])
    return Progress(**state["progress"])


def _write_epoch(setup: TrainSetup, progress: Progress, out: Path, improved: bool) -> None:
    record = {**setup.record, "epoch": progress.epoch}
    weights = _eval_model(setup).state_dict()
    checkpoint.save_weights(out / "last.safetensors", weights, record)
    if improved:
        checkpoint.save_weights(out / "best.safetensors", weights, record)
    _save_state(setup, progress, out)
    write_epoch_log(out / "log.csv", progress.history)


def _note_skipped(setup: TrainSetup, messages: list[str]) -> None:
    """Warn once per unreadable file met while streaming (every epoch meets it again)."""
    for message in messages:
        if message not in setup.skipped:
            warnings.warn(f"skipping unreadable image {message}", stacklevel=2)
            setup.skipped.append(message)


def run_epoch(setup: TrainSetup, epoch: int, progress: Progress) -> dict[str, float]:
    cfg, ctx = setup.config, setup.ctx
    order_gen, augment_gen = epoch_generator(cfg.seed, epoch), epoch_generator(cfg.seed + 7919, epoch)
    ctx.augment = None if cfg.augment == "none" else partial(augment_batch, mode=cfg.augment, generator=augment_gen)
    drop = drops_last(setup.train_batches, cfg.batch_size)
    batches = setup.train_batches.iterate(batch_size=cfg.batch_size, shuffle=True, generator=order_gen, drop_last=drop)
    total = setup.train_batches.num_batches(cfg.batch_size, drop_last=drop)
    bar = tqdm(total=total, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", leave=False,
               disable=True if not setup.runtime.is_main else None, dynamic_ncols=True)   # None: off in logs
    start = time.perf_counter()
    with bar:
        row, progress.global_step, skipped = train_one_epoch(ctx, batches, epoch=epoch,
                                                             global_step=progress.global_step, progress=bar)
    _note_skipped(setup, skipped)
    row = {"epoch": float(epoch + 1), "lr": ctx.scheduler.get_last_lr()[0], **row}
    if setup.val_batches is not None:
        metric = ctx.task.metric(len(setup.class_names), setup.class_names)
        val_batches = setup.val_batches.iterate(batch_size=max(cfg.batch_size, 256), shuffle=False,
                                                generator=order_gen)
        val_loss, val_skipped = evaluate_batches(_eval_model(setup), ctx.task, val_batches, ctx.normalizer,
                                                 setup.runtime, metric, flip_tta=cfg.tta)
        _note_skipped(setup, val_skipped)
        scores = metric.compute()
        row.update({"val_loss": val_loss, **{f"val_{k}": v for k, v in scores.items() if "/" not in k}})
        row["_confusion"] = metric.confusion.cpu()   # type: ignore[assignment]
        row["_metrics"] = {"loss": val_loss, **scores}  # type: ignore[assignment]
    row["epoch_time_s"] = time.perf_counter() - start
    return row


def fit(setup: TrainSetup, progress: Progress, *, callbacks: Sequence[EpochCallback] = ()) -> Progress:
    cfg, out = setup.config, Path(setup.config.out)
    for epoch in range(progress.epoch, cfg.epochs):
        row = run_epoch(setup, epoch, progress)
        confusion, metrics = row.pop("_confusion", None), row.pop("_metrics", None)
        top1 = row.get("val_top1", -row["train_loss"])     # without validation data, lower train loss is better
        improved = progress.best_epoch == 0 or top1 > progress.best_top1
        progress.epoch = epoch + 1
        progress.history.append(row)
        if improved:
            progress.best_top1, progress.best_epoch, progress.bad_epochs = top1, epoch + 1, 0
            progress.best_metrics = metrics or {"loss": row["train_loss"]}
            progress.best_confusion = confusion
        else:
            progress.bad_epochs += 1
        if setup.runtime.is_main:
            _write_epoch(setup, progress, out, improved)
            print(_epoch_line(row, cfg.epochs), flush=True)
        for callback in callbacks:
            callback(epoch, row)
        if cfg.patience is not None and progress.bad_epochs >= cfg.patience:
            if setup.runtime.is_main:
                print(f"early stop: no better val top-1 for {cfg.patience} epochs (best {progress.best_top1:.4f} "
                      f"at epoch {progress.best_epoch})", flush=True)
            break
    return progress


def _epoch_line(row: dict[str, float], epochs: int) -> str:
    parts = [f"epoch {int(row['epoch'])}/{epochs}", f"train_loss {row['train_loss']:.4f}"]
    for key in ("val_loss", "val_top1", "val_top5"):
        if key in row:
            parts.append(f"{key} {row[key]:.4f}")
    parts.append(f"{row['train_images_per_s']:.0f} img/s")
    parts.append(f"{row['epoch_time_s']:.1f}s")
    return "  ".join(parts)
