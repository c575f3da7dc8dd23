"""`ninshiki segment train`: build everything a semantic-segmentation run needs from its config, fit, report.

The epoch loop, checkpoints, resume and time budget are the detection trainer's (engine/detect_trainer.py);
this module supplies the segmentation data, model and validation (mIoU at the images' original resolution).
"""
from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ninshiki.api.segment_common import build_segmenter, segmenter_record, write_segmentation_report
from ninshiki.config import parse_model_kwargs, resolve_resume
from ninshiki.config_detect import require
from ninshiki.config_segment import SegmentTrainConfig
from ninshiki.engine.detect_loop import DetectStepContext
from ninshiki.engine.detect_trainer import DetectProgress, DetectSetup, EpochCallback, eval_model, run_training
from ninshiki.engine.optim import make_optimizer, make_scheduler
from ninshiki.engine.runtime import Runtime, make_runtime
from ninshiki.engine.segment_loop import SegmentEvalResult, evaluate_segmenter
from ninshiki.io import write_text

SAMPLE_IMAGES = 8   # validation images drawn in OUT/val_samples.png


def _build_model(config: SegmentTrainConfig, classes: list[str], runtime: Runtime):
    bare = build_segmenter(config.model, num_classes=len(classes), model_kwargs=parse_model_kwargs(config.model_kwargs),
                           crf=config.crf, crf_iterations=config.crf_iterations, weights=config.weights)
    if config.image_size:
        bare.input_size = config.image_size
    bare.to(runtime.device)
    if runtime.channels_last:
        bare.to(memory_format=torch.channels_last)
    model = torch.compile(bare) if config.compile else bare
    return bare, model


def _loaders(config: SegmentTrainConfig, data: Any, size: int):
    """(train loader per epoch, its batches per epoch, validation loader factory or None)."""
    from ninshiki.data.segmentation.dataset import SegmentationDataset, segmentation_loader
    from ninshiki.data.segmentation.transforms import eval_transform, train_transform

    train_set = SegmentationDataset(data.train, train_transform(size, scale=(config.scale_min, config.scale_max),
                                                    rotate=config.rotate),
                                    cache_images=config.cache_images)
    persistent = segmentation_loader(train_set, batch_size=config.batch_size, shuffle=True, workers=config.workers,
                                     generator=torch.Generator(), drop_last=len(train_set) > config.batch_size)

    def train_loader(epoch: int):
        persistent.generator.manual_seed(config.seed * 100_003 + epoch)   # the epoch's order, the same on resume
        return persistent

    val_loader = None
    if data.val is not None and data.val.items:
        val_set = SegmentationDataset(data.val, eval_transform(max_size=config.max_size),
                                      cache_images=config.cache_images, keep_original_mask=True)
        loader = segmentation_loader(val_set, batch_size=config.batch_size, shuffle=False, workers=config.workers)

        def val_loader():
            return loader
    return train_loader, len(persistent), val_loader


def validate_segmenter(setup: DetectSetup) -> tuple[dict[str, Any], SegmentEvalResult]:
    """The trainer's validation hook: mIoU and friends, and the validation losses."""
    from ninshiki.metrics.segmentation import SegmentationMetric

    data = setup.data
    batches = setup.val_loader()
    metric = SegmentationMetric(data.classes, ignore_index=data.val.ignore_index)
    bar = tqdm(total=len(batches), desc="validating", unit="batch", leave=False, disable=None, dynamic_ncols=True)
    with bar:
        result = evaluate_segmenter(eval_model(setup), batches, setup.runtime, metric, keep=SAMPLE_IMAGES,
                                    progress=bar)
    scores = metric.compute()
    row = {f"val_{name}": value for name, value in result.losses.items()}
    row.update({f"val_{k}": v for k, v in scores.items() if "/" not in k})
    return {"_all": scores, **row}, result


def build_setup(config: SegmentTrainConfig, runtime: Runtime) -> DetectSetup:
    from ninshiki.data.segmentation_data import load_segmentation_data

    torch.manual_seed(config.seed)
    data = load_segmentation_data(config.data, split_seed=config.seed, val_fraction=config.val_fraction)
    if not data.train.items:
        raise ValueError(f"{config.data}: no training images")
    if summary := data.summary():
        print(summary, file=sys.stderr)
    bare, model = _build_model(config, data.classes, runtime)
    size = int(bare.input_size)
    train_loader, steps, val_loader = _loaders(config, data, size)
    optimizer = make_optimizer(bare, name=config.optimizer, lr=config.lr, weight_decay=config.weight_decay,
                               momentum=config.momentum, nesterov=config.nesterov)
    scheduler = make_scheduler(optimizer, lambda step: 1.0)      # fit() sets the real schedule
    ema = None
    if config.ema:
        ema = torch.optim.swa_utils.AveragedModel(
            bare, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
    ctx = DetectStepContext(model=model, bare=bare, optimizer=optimizer, scheduler=scheduler, runtime=runtime,
                            clip_grad=config.clip_grad, ema=ema)
    record = segmenter_record(model=config.model, model_kwargs=parse_model_kwargs(config.model_kwargs),
                              classes=data.classes, colours=data.colours, image_size=size,
                              ignore_index=data.train.ignore_index, crf=config.crf,
                              crf_iterations=config.crf_iterations, max_size=config.max_size)
    return DetectSetup(config, runtime, ctx, train_loader, val_loader, steps, lambda: None, [], record, data,
                       validate=validate_segmenter, key_metric="miou")


def train(config: SegmentTrainConfig, *, callbacks: Sequence[EpochCallback] = ()) -> dict[str, float]:
    """Train a semantic segmenter as `config` says; returns the best validation metrics (OUT/metrics.json)."""
    config = resolve_resume(config)
    require(config, "data")
    runtime = make_runtime(device=config.device, amp=config.amp, channels_last=config.channels_last)
    if runtime.distributed:
        raise ValueError("segment train runs in one process; data-parallel (torchrun) training is not supported yet")
    setup = build_setup(config, runtime)
    return run_training(setup, announce=_announce, write_results=_write_results, callbacks=callbacks)


def _announce(setup: DetectSetup, progress: DetectProgress) -> None:
    cfg, rt, data = setup.config, setup.runtime, setup.data
    params = sum(p.numel() for p in setup.ctx.bare.parameters()) / 1e6
    what = f"resuming at epoch {progress.epoch + 1}" if progress.epoch else "training"
    amp = "bf16" if rt.amp_dtype is torch.bfloat16 else "fp32"
    crf = " + CRF-as-RNN" if cfg.crf else ""
    print(f"{what} {cfg.model}{crf} ({params:.2f}M params, {setup.record['image_size']} px crops) on {cfg.data}: "
          f"{len(data.train.items)} train / {len(data.val.items) if data.val else 0} val images, "
          f"{len(data.classes)} classes; {rt.device} {amp}", file=sys.stderr, flush=True)


def _write_results(setup: DetectSetup, progress: DetectProgress, metrics: dict[str, float], out: Path) -> None:
    from ninshiki.api.segment_pictures import save_validation_samples
    from ninshiki.io import write_json
    from ninshiki.viz.curves import save_training_curves

    save_training_curves(out / "log.csv", out / "curves.png")
    result = setup.last_eval
    if result is None:
        write_json(out / "metrics.json", metrics)
    else:
        write_segmentation_report(out, result.metric, metrics, setup.data.classes)
        save_validation_samples(out / "val_samples.png", setup.data.val, result.predictions, setup.data)
    if setup.skipped:
        write_text(out / "skipped.txt", "\n".join(setup.skipped) + "\n")
        print(f"skipped {len(setup.skipped)} unreadable file(s); listed in {out / 'skipped.txt'}", file=sys.stderr)
    best = (f"mIoU {metrics['miou']:.4f}, pixel accuracy {metrics['pixel_acc']:.4f} at epoch {progress.best_epoch}"
            if "miou" in metrics else "done")
    print(f"{best}; results in {out}", flush=True)
