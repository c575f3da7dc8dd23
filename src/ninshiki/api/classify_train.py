"""`ninshiki classify train`: build everything a run needs from its config, fit, write the results."""
from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from ninshiki.config import TrainConfig, parse_model_kwargs, resolve_resume, to_yaml
from ninshiki.engine import checkpoint
from ninshiki.engine.batches import Normalizer, drops_last, make_batches
from ninshiki.engine.loop import StepContext
from ninshiki.engine.optim import lr_factor, make_optimizer, make_scheduler
from ninshiki.engine.runtime import Runtime, make_runtime
from ninshiki.engine.trainer import EpochCallback, Progress, TrainSetup, fit, restore
from ninshiki.io import write_json, write_text
from ninshiki.tasks.classify import ClassifyTask

log = logging.getLogger(__name__)


def _load_data(config: TrainConfig):
    from ninshiki.data.datasets import load_classification_data

    data = load_classification_data(config.data, data_root=config.data_root, val_data=config.val_data,
                                    val_split=config.val_split, image_size=config.image_size, seed=config.seed,
                                    strict=config.strict, memory_limit_mb=config.memory_limit_mb)
    if config.train_limit is not None and data.train is not None and len(data.train) > config.train_limit:
        from ninshiki.data.splits import limit_split
        data.train = limit_split(data.train, config.train_limit, seed=config.seed)
    return data


def _normalizer(config: TrainConfig, train_split) -> Normalizer:
    record = checkpoint.read_record(config.weights) if config.weights else {}
    if "mean" in record and "std" in record:
        return Normalizer(tuple(record["mean"]), tuple(record["std"]))   # fine-tuning one of our own runs
    from ninshiki.data.datasets import InMemorySplit, Unreadable

    if isinstance(train_split, InMemorySplit):
        return Normalizer.fit(train_split.images)
    # Streamed or resized on access: estimate from a fixed sample of readable images.
    picks = torch.randperm(len(train_split), generator=torch.Generator().manual_seed(0))[:256].tolist()
    items = (train_split[i] for i in picks)
    images = [item[0] for item in items if not isinstance(item, Unreadable)]
    if not images:
        raise ValueError("no readable training image to compute normalisation statistics from")
    return Normalizer.fit(torch.stack(images))


def _build_model(config: TrainConfig, data, runtime: Runtime) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(the module that holds the parameters, the one the step calls: maybe DDP-wrapped and compiled)."""
    from ninshiki.models.weights import create_model

    bare = create_model(config.model, num_classes=len(data.classes), in_channels=data.channels,
                        weights=config.weights, **parse_model_kwargs(config.model_kwargs))
    bare.to(runtime.device)
    if runtime.channels_last:
        bare.to(memory_format=torch.channels_last)
    model = bare
    if runtime.distributed:
        model = DistributedDataParallel(bare, device_ids=[runtime.device] if runtime.device.type == "cuda" else None)
    if config.compile:
        model = torch.compile(model)
    return bare, model


def _build_optimization(config: TrainConfig, bare: torch.nn.Module, steps_per_epoch: int):
    """(optimizer, per-step scheduler, EMA or None)."""
    optimizer = make_optimizer(bare, name=config.optimizer, lr=config.lr, weight_decay=config.weight_decay,
                               momentum=config.momentum, nesterov=config.nesterov)
    factor = lr_factor(schedule=config.schedule, total_steps=steps_per_epoch * config.epochs,
                       warmup_steps=round(config.warmup_epochs * steps_per_epoch), steps_per_epoch=steps_per_epoch,
                       step_epochs=config.step_epochs, gamma=config.gamma)
    ema = None
    if config.ema:
        ema = torch.optim.swa_utils.AveragedModel(
            bare, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
    return optimizer, make_scheduler(optimizer, factor), ema


def _record(config: TrainConfig, data, normalizer: Normalizer) -> dict:
    """What every weights file of the run says about itself, so val and predict need nothing else."""
    return {"model": config.model, "model_kwargs": parse_model_kwargs(config.model_kwargs), "task": "classify",
            "classes": list(data.classes), "channels": data.channels, "image_size": list(data.image_size),
            "mean": list(normalizer.mean), "std": list(normalizer.std), "tta": config.tta}


def build_setup(config: TrainConfig, runtime: Runtime) -> TrainSetup:
    torch.manual_seed(config.seed)
    data = _load_data(config)
    if data.train is None or len(data.train) == 0:
        raise ValueError(f"{config.data}: no training images")
    normalizer = _normalizer(config, data.train)
    bare, model = _build_model(config, data, runtime)
    train_batches = make_batches(data.train, runtime, workers=config.workers)
    steps = train_batches.num_batches(config.batch_size, drop_last=drops_last(train_batches, config.batch_size))
    optimizer, scheduler, ema = _build_optimization(config, bare, steps)
    task = ClassifyTask(label_smoothing=config.label_smoothing, aux_weight=config.aux_weight)
    ctx = StepContext(model=model, task=task, optimizer=optimizer, scheduler=scheduler, normalizer=normalizer,
                      runtime=runtime, clip_grad=config.clip_grad, ema=ema)
    val = make_batches(data.val, runtime, workers=config.workers) if data.val is not None and len(data.val) else None
    return TrainSetup(config, runtime, model, bare, ctx, train_batches, val, list(data.classes),
                      _record(config, data, normalizer), skipped=list(data.skipped))


def train(config: TrainConfig, *, callbacks: Sequence[EpochCallback] = ()) -> dict[str, float]:
    """Train a classifier as `config` says; returns the metrics also written to OUT/metrics.json."""
    from ninshiki.registry import model_info

    if model_info(config.model).classical:   # fit once on the whole set: no epochs, optimiser or resume
        from ninshiki.api import classical_classify
        return classical_classify.train(config)
    config = resolve_resume(config)
    runtime = make_runtime(device=config.device, amp=config.amp, channels_last=config.channels_last)
    setup = build_setup(config, runtime)
    out = Path(config.out)
    progress = restore(setup, out) if config.resume else Progress()
    if runtime.is_main:
        write_text(out / "config.yaml", to_yaml(config))
        _announce(setup, progress)
    progress = fit(setup, progress, callbacks=callbacks)
    metrics = summarise(progress)
    if runtime.is_main:
        write_results(setup, progress, metrics, out)
    return metrics


def _announce(setup: TrainSetup, progress: Progress) -> None:
    cfg, rt = setup.config, setup.runtime
    params = sum(p.numel() for p in setup.bare_model.parameters()) / 1e6
    what = f"resuming at epoch {progress.epoch + 1}" if progress.epoch else "training"
    amp = "bf16" if rt.amp_dtype is torch.bfloat16 else "fp32"
    print(f"{what} {cfg.model} ({params:.2f}M params) on {cfg.data}: {len(setup.train_batches)} train / "
          f"{len(setup.val_batches) if setup.val_batches else 0} val images, {len(setup.class_names)} classes; "
          f"{rt.device} {amp}{' channels_last' if rt.channels_last else ''}"
          f"{f', {rt.world_size} processes' if rt.distributed else ''}", file=sys.stderr, flush=True)


def summarise(progress: Progress) -> dict[str, float]:
    last = progress.history[-1] if progress.history else {}
    summary = {k: float(v) for k, v in progress.best_metrics.items()}
    summary.update(best_epoch=float(progress.best_epoch), epochs=float(progress.epoch),
                   train_loss=float(last.get("train_loss", float("nan"))),
                   train_time_s=float(sum(r.get("epoch_time_s", 0.0) for r in progress.history)))
    return summary


def write_results(setup: TrainSetup, progress: Progress, metrics: dict[str, float], out: Path) -> None:
    from ninshiki.api.reports import write_classification_report
    from ninshiki.viz.curves import save_training_curves

    write_json(out / "metrics.json", metrics)
    if progress.best_confusion is not None:
        write_classification_report(out, progress.best_confusion, setup.class_names)
    save_training_curves(out / "log.csv", out / "curves.png")
    if setup.skipped:
        write_text(out / "skipped.txt", "\n".join(setup.skipped) + "\n")
        print(f"skipped {len(setup.skipped)} unreadable file(s); listed in {out / 'skipped.txt'}", file=sys.stderr)
    best = f"top-1 {metrics['top1']:.4f} at epoch {int(metrics['best_epoch'])}" if "top1" in metrics else "done"
    print(f"{best}; results in {out}", flush=True)
