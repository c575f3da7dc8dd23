"""`ninshiki detect train` (and `instance train`): build everything a detection run needs from its config, fit,
write the results.

An instance-segmentation run (`task="instance"`, Mask R-CNN) is a detection run whose samples carry the
objects' masks and whose validation adds mask AP to box AP; everything else is shared.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from ninshiki.api.detect_common import (
    augment_mode,
    coco_results,
    detector_record,
    ground_truth,
    write_detection_report,
)
from ninshiki.config import parse_model_kwargs, resolve_resume
from ninshiki.config_detect import DetectTrainConfig, require
from ninshiki.engine.detect_loop import DetectStepContext
from ninshiki.engine.detect_trainer import DetectProgress, DetectSetup, EpochCallback, run_training
from ninshiki.engine.optim import make_optimizer, make_scheduler
from ninshiki.engine.runtime import Runtime, make_runtime
from ninshiki.io import write_json, write_text


def _build_model(config: DetectTrainConfig, classes: list[str], runtime: Runtime):
    from ninshiki.models.weights import create_model

    bare = create_model(config.model, num_classes=len(classes), weights=config.weights,
                        **parse_model_kwargs(config.model_kwargs))
    if config.image_size:
        bare.input_size = config.image_size
    bare.to(runtime.device)
    if runtime.channels_last:
        bare.to(memory_format=torch.channels_last)
    model = torch.compile(bare) if config.compile else bare
    return bare, model


def _loaders(config: DetectTrainConfig, data, size: int, *, with_masks: bool = False):
    """(train loader per epoch, its batches per epoch, validation loader factory or None)."""
    from ninshiki.data.detection import DetectionDataset, detection_loader, eval_transform, train_transform

    mode = augment_mode(config.model, config.augment)
    train_set = DetectionDataset(data.train, train_transform(size, mode=mode, mosaic=config.mosaic),
                                 cache_images=config.cache_images, mosaic=config.mosaic, with_masks=with_masks)
    persistent = detection_loader(train_set, batch_size=config.batch_size, shuffle=True, workers=config.workers,
                                  generator=torch.Generator(), drop_last=len(train_set) > config.batch_size)

    def train_loader(epoch: int):
        persistent.generator.manual_seed(config.seed * 100_003 + epoch)   # the epoch's order, the same on resume
        return persistent

    val_loader = None
    if data.val is not None and data.val.images:
        val_set = DetectionDataset(data.val, eval_transform(size), cache_images=config.cache_images,
                                   with_masks=with_masks)
        loader = detection_loader(val_set, batch_size=config.batch_size, shuffle=False, workers=config.workers)
        def val_loader():
            return loader
    return train_loader, len(persistent), val_loader


def build_setup(config: DetectTrainConfig, runtime: Runtime, *, task: str = "detect") -> DetectSetup:
    from ninshiki.data.detection_data import load_detection_data

    check_task(config.model, task)
    torch.manual_seed(config.seed)
    data = load_detection_data(config.data, split_seed=config.seed, val_fraction=config.val_fraction)
    if not data.train.images:
        raise ValueError(f"{config.data}: no training images")
    if summary := data.summary():
        print(summary, file=sys.stderr)
    bare, model = _build_model(config, data.classes, runtime)
    size = int(bare.input_size)
    train_loader, steps, val_loader = _loaders(config, data, size, with_masks=task == "instance")
    optimizer = make_optimizer(bare, name=config.optimizer, lr=config.lr, weight_decay=config.weight_decay,
                               momentum=config.momentum, nesterov=config.nesterov)
    scheduler = make_scheduler(optimizer, lambda step: 1.0)      # fit() sets the real schedule
    ema = None
    if config.ema:
        ema = torch.optim.swa_utils.AveragedModel(
            bare, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
    ctx = DetectStepContext(model=model, bare=bare, optimizer=optimizer, scheduler=scheduler, runtime=runtime,
                            clip_grad=config.clip_grad, ema=ema)
    val = data.val
    category_ids = data.train.category_ids
    record = detector_record(model=config.model, model_kwargs=parse_model_kwargs(config.model_kwargs),
                             classes=data.classes, image_size=size, category_ids=category_ids, task=task)
    return DetectSetup(config, runtime, ctx, train_loader, val_loader, steps,
                       lambda: new_metric(task, data.classes, category_ids),
                       ground_truth(val, with_masks=task == "instance") if val is not None else [], record, data)


def check_task(model: str, task: str) -> None:
    """`detect` commands take detectors, `instance` commands instance segmenters (both share this code)."""
    from ninshiki.registry import model_info

    registered = model_info(model).tasks
    if task not in registered:
        raise ValueError(f"{model!r} is a {'/'.join(registered)!r} model; `ninshiki {task}` needs one of "
                         f"`ninshiki models --task {task}`")


def new_metric(task: str, classes: list[str], category_ids: list[int] | None):
    """A fresh validation metric: COCO/VOC box AP, plus mask AP for instance segmentation."""
    if task == "instance":
        from ninshiki.metrics.instance import InstanceMetric
        return InstanceMetric(classes, category_ids=category_ids)
    from ninshiki.metrics.detection import DetectionMetric
    return DetectionMetric(classes, category_ids=category_ids)


def train(config: DetectTrainConfig, *, callbacks: Sequence[EpochCallback] = (), task: str = "detect"
          ) -> dict[str, float]:
    """Train a detector (or, with `task="instance"`, an instance segmenter) as `config` says; returns the best
    validation metrics, also in OUT/metrics.json."""
    from ninshiki.registry import model_info

    if model_info(config.model).classical:   # Viola-Jones, HOG + SVM: fit once, no epochs or resume
        from ninshiki.api import classical_detect
        return classical_detect.train(config)
    config = resolve_resume(config)   # a resumed run takes its data (and all else) from OUT's config
    require(config, "data")
    runtime = make_runtime(device=config.device, amp=config.amp, channels_last=config.channels_last)
    if runtime.distributed:   # the loaders do not shard by rank yet: every rank would train on every image
        raise ValueError("detect train runs in one process; data-parallel (torchrun) detection is not supported yet")
    setup = build_setup(config, runtime, task=task)
    return run_training(setup, announce=_announce, write_results=_write_results, callbacks=callbacks)


def _announce(setup: DetectSetup, progress: DetectProgress) -> None:
    cfg, rt, data = setup.config, setup.runtime, setup.data
    params = sum(p.numel() for p in setup.ctx.bare.parameters()) / 1e6
    what = f"resuming at epoch {progress.epoch + 1}" if progress.epoch else "training"
    amp = "bf16" if rt.amp_dtype is torch.bfloat16 else "fp32"
    print(f"{what} {cfg.model} ({params:.2f}M params, {setup.record['image_size']} px) on {cfg.data}: "
          f"{len(data.train.images)} train / {len(data.val.images) if data.val else 0} val images, "
          f"{len(data.classes)} classes; {rt.device} {amp}", file=sys.stderr, flush=True)


def _write_results(setup: DetectSetup, progress: DetectProgress, metrics: dict[str, float], out: Path) -> None:
    from ninshiki.viz.curves import save_training_curves

    data = setup.data
    save_training_curves(out / "log.csv", out / "curves.png")
    result = setup.last_eval
    if result is None or data.val is None:
        write_json(out / "metrics.json", metrics)
    else:   # metrics.json with the per-class table and curves of the best validation
        write_detection_report(out, result.metric, metrics, data.classes)
        image_ids = [img.image_id if img.image_id is not None else i + 1 for i, img in enumerate(data.val.images)]
        category_ids = data.train.category_ids or list(range(1, len(data.classes) + 1))
        write_json(out / "val_predictions.json", coco_results(result.detections, image_ids, category_ids,
                                                              rles=result.rles or None))
        if "mask_map" in metrics:
            print(f"mask mAP@[.5:.95] {metrics['mask_map']:.4f}, mask mAP@.5 {metrics['mask_map50']:.4f}", flush=True)
    if setup.skipped:
        write_text(out / "skipped.txt", "\n".join(setup.skipped) + "\n")
        print(f"skipped {len(setup.skipped)} unreadable file(s); listed in {out / 'skipped.txt'}", file=sys.stderr)
    best = (f"mAP@[.5:.95] {metrics['map']:.4f}, mAP@.5 {metrics['map50']:.4f} at epoch {progress.best_epoch}"
            if "map" in metrics else "done")
    print(f"{best}; results in {out}", flush=True)
