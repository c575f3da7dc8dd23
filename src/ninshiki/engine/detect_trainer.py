"""The epoch loop of a detection or segmentation run: train, validate, log, checkpoint, stop, resume.

Detection validates with COCO and VOC mAP (the default `validate`); semantic segmentation plugs in its own
`validate` (mIoU) and `key_metric`, and otherwise shares this loop, its checkpoints and its time budget.

With `--time-limit`, the number of epochs is re-planned after every epoch from the mean epoch time so far,
so that training fits the budget, and the learning-rate schedule is stretched to the new total (as
Ultralytics' `time=` does): a short budget still ends with a fully annealed model, not a cut-off one.
"""
from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn
from tqdm.auto import tqdm

from ninshiki.config_detect import DetectTrainConfig
from ninshiki.engine import checkpoint
from ninshiki.engine.detect_loop import DetectStepContext, EvalResult, evaluate_detector, train_one_epoch
from ninshiki.engine.logs import write_epoch_log
from ninshiki.engine.optim import lr_factor
from ninshiki.engine.runtime import Runtime

EpochCallback = Callable[[int, dict[str, float]], None]
MetricFactory = Callable[[], Any]            # () -> a fresh DetectionMetric
LoaderFactory = Callable[[int], Any]         # epoch -> an iterable of DetectionBatch


@dataclass
class DetectProgress:
    """What survives between epochs, saved in train_state.safetensors."""
    epoch: int = 0                       # epochs finished
    planned_epochs: int = 0              # the schedule's length (re-planned under a time limit)
    global_step: int = 0
    train_seconds: float = 0.0
    best_map: float = -1.0
    best_epoch: int = 0
    bad_validations: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best_metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class DetectSetup:
    config: DetectTrainConfig
    runtime: Runtime
    ctx: DetectStepContext
    train_loader: LoaderFactory
    val_loader: Callable[[], Any] | None
    steps_per_epoch: int
    new_metric: MetricFactory
    ground_truth: list[Any]              # GroundTruth of each validation image, by dataset index
    record: dict[str, Any]               # written into every weights file
    data: Any = None                     # the DetectionData the run reads (classes, splits), for reports
    skipped: list[str] = field(default_factory=list)
    last_eval: Any = None                # the best validation's result (detections, ...), for the final report
    validate: Callable[[DetectSetup], tuple[dict[str, Any], Any]] | None = None   # None: detection mAP
    key_metric: str = "map"              # the validation score that picks best.safetensors (higher is better)


def eval_model(setup: DetectSetup) -> nn.Module:
    return setup.ctx.ema.module if setup.ctx.ema is not None else setup.ctx.bare


def set_schedule(setup: DetectSetup, epochs: int) -> None:
    """Point the per-step scheduler at a schedule of `epochs` epochs (keeps its step count).

    The next step's learning rate comes from the new schedule as well: the old one set it (the placeholder's full
    rate before the first step, which skipped the warmup's start; the previous plan after a re-planning).
    LambdaLR computes the same product on its steps, so resumed runs stay bit-identical.
    """
    cfg, steps = setup.config, setup.steps_per_epoch
    factor = lr_factor(schedule=cfg.schedule, total_steps=steps * epochs, warmup_steps=round(cfg.warmup_epochs * steps),
                       steps_per_epoch=steps, step_epochs=cfg.step_epochs, gamma=cfg.gamma)
    scheduler, groups = setup.ctx.scheduler, setup.ctx.optimizer.param_groups
    scheduler.lr_lambdas = [factor] * len(groups)
    for group, base in zip(groups, scheduler.base_lrs):
        group["lr"] = base * factor(scheduler.last_epoch)


def _state(setup: DetectSetup, progress: DetectProgress) -> dict[str, Any]:
    ctx = setup.ctx
    return {"progress": dict(vars(progress)), "model": ctx.bare.state_dict(), "optimizer": ctx.optimizer.state_dict(),
            "scheduler": {k: v for k, v in ctx.scheduler.state_dict().items() if k != "lr_lambdas"},
            "ema": ctx.ema.state_dict() if ctx.ema is not None else None, "rng": checkpoint.rng_states()}


def restore(setup: DetectSetup, run_dir: Path) -> DetectProgress:
    """Load train_state.safetensors of `run_dir` into the setup; returns where to continue."""
    state = checkpoint.load_train_state(run_dir / "train_state.safetensors")
    setup.ctx.bare.load_state_dict(state["model"])
    setup.ctx.optimizer.load_state_dict(state["optimizer"])
    setup.ctx.scheduler.load_state_dict({**state["scheduler"], "lr_lambdas": [None] * len(setup.ctx.optimizer.param_groups)})
    if setup.ctx.ema is not None:
        if state["ema"] is None:
            raise ValueError(f"{run_dir}: the run being resumed had no EMA; resume without --ema")
        setup.ctx.ema.load_state_dict(state["ema"])
    checkpoint.restore_rng_states(state["rng"])
    progress = DetectProgress(**state["progress"])
    if setup.config.time_limit is None:       # the config may have been given more epochs since
        progress.planned_epochs = setup.config.epochs
    set_schedule(setup, progress.planned_epochs)
    return progress


def _validate(setup: DetectSetup) -> tuple[dict[str, Any], Any]:
    """({"_all": every score, "val_<name>": each loss and summary score}, the raw result)."""
    if setup.validate is not None:
        return setup.validate(setup)
    return _validate_detector(setup)


def _validate_detector(setup: DetectSetup) -> tuple[dict[str, Any], EvalResult]:
    model = eval_model(setup)
    model.score_threshold, model.max_detections = setup.config.score_threshold, setup.config.max_detections
    batches = setup.val_loader()
    bar = tqdm(total=len(batches), desc="validating", unit="batch", leave=False, disable=None, dynamic_ncols=True)
    with bar:
        result = evaluate_detector(model, batches, setup.runtime, progress=bar)
    metric = setup.new_metric()
    indices = sorted(result.detections)
    metric.update([result.detections[i] for i in indices], [setup.ground_truth[i] for i in indices],
                  **_mask_arguments(result, indices))
    scores = metric.compute()
    result.metric = metric
    row = {f"val_{name}": value for name, value in result.losses.items()}
    row.update({f"val_{k}": v for k, v in scores.items() if "/" not in k})
    return {"_all": scores, **row}, result


def _mask_arguments(result: EvalResult, indices: list[int]) -> dict[str, Any]:
    """The detections' masks (RLEs) for an instance metric; nothing for box-only detectors."""
    return {"rles": [result.rles.get(i, []) for i in indices]} if result.rles else {}


def _note_skipped(setup: DetectSetup, messages: list[str]) -> None:
    for message in messages:
        if message not in setup.skipped:
            warnings.warn(f"skipping unreadable image {message}", stacklevel=2)
            setup.skipped.append(message)


def run_epoch(setup: DetectSetup, epoch: int, progress: DetectProgress, deadline: float | None
              ) -> tuple[dict[str, float], bool]:
    cfg = setup.config
    batches = setup.train_loader(epoch)
    bar = tqdm(total=setup.steps_per_epoch, desc=f"epoch {epoch + 1}/{progress.planned_epochs}", unit="batch",
               leave=False, disable=True if not setup.runtime.is_main else None, dynamic_ncols=True)
    start = time.perf_counter()
    with bar:
        row, progress.global_step, skipped, stopped = train_one_epoch(
            setup.ctx, batches, epoch=epoch, global_step=progress.global_step, progress=bar, deadline=deadline)
    _note_skipped(setup, skipped)
    train_time = time.perf_counter() - start
    progress.train_seconds += train_time
    row = {"epoch": float(epoch + 1), "lr": setup.ctx.scheduler.get_last_lr()[0], **row, "epoch_time_s": train_time,
           "train_time_s": progress.train_seconds}
    last = epoch + 1 >= progress.planned_epochs or stopped
    if setup.val_loader is not None and ((epoch + 1) % cfg.val_every == 0 or last):
        scores, result = _validate(setup)
        _note_skipped(setup, result.skipped)
        row.update(scores)
        row["_result"] = result           # type: ignore[assignment]
    return row, stopped


def _replan(setup: DetectSetup, progress: DetectProgress) -> None:
    """Under a time limit: as many epochs as fit in what is left of it, at the mean pace so far.

    Re-planned after every epoch (as Ultralytics' `time=` does), so a slow first epoch (decoding and
    caching the images, or a busy machine) does not leave the budget half used.
    """
    cfg = setup.config
    pace = progress.train_seconds / max(progress.epoch, 1)
    left = cfg.time_limit - progress.train_seconds
    planned = max(progress.epoch, progress.epoch + math.floor(left / max(pace, 1e-9)))
    if planned != progress.planned_epochs:
        progress.planned_epochs = planned
        set_schedule(setup, max(planned, 1))
        print(f"time limit {cfg.time_limit:.0f}s: {pace:.1f}s per epoch, planning {planned} epochs", flush=True)


def fit(setup: DetectSetup, progress: DetectProgress, *, callbacks: Sequence[EpochCallback] = ()) -> DetectProgress:
    cfg, out = setup.config, Path(setup.config.out)
    if not progress.planned_epochs:
        progress.planned_epochs = cfg.epochs
        set_schedule(setup, cfg.epochs)
    while progress.epoch < progress.planned_epochs:
        # The budget counts training steps only, not validation.
        deadline = (time.perf_counter() + cfg.time_limit - progress.train_seconds
                    if cfg.time_limit is not None else None)
        row, stopped = run_epoch(setup, progress.epoch, progress, deadline)
        all_scores, result = row.pop("_all", None), row.pop("_result", None)
        progress.epoch += 1
        progress.history.append(row)
        improved = _update_best(progress, row, all_scores, setup.key_metric,
                                validating=setup.val_loader is not None)
        if improved and result is not None:
            setup.last_eval = result
        if setup.runtime.is_main:
            _write_epoch(setup, progress, out, improved)
            print(_epoch_line(row, progress.planned_epochs, setup.key_metric), flush=True)
        for callback in callbacks:
            callback(progress.epoch - 1, row)
        if cfg.time_limit is not None and not stopped:
            _replan(setup, progress)
        if stopped or (cfg.patience is not None and progress.bad_validations >= cfg.patience):
            break
    _validate_last(setup, progress, out)
    return progress


def _validate_last(setup: DetectSetup, progress: DetectProgress, out: Path) -> None:
    """A run whose plan shrank under a time limit may end on an epoch that was not validated: validate it."""
    if setup.val_loader is None or not progress.history or f"val_{setup.key_metric}" in progress.history[-1]:
        return
    scores, result = _validate(setup)
    all_scores = scores.pop("_all")
    row = progress.history[-1]
    row.update(scores)
    improved = _update_best(progress, row, all_scores, setup.key_metric)
    if improved:
        setup.last_eval = result
    if setup.runtime.is_main:
        _write_epoch(setup, progress, out, improved)
        print(_epoch_line(row, progress.planned_epochs, setup.key_metric), flush=True)


def _update_best(progress: DetectProgress, row: dict[str, float], scores: dict[str, float] | None,
                 key: str = "map", *, validating: bool = True) -> bool:
    """Whether this epoch's weights are the best so far: by validation score, or, when the run has no
    validation data, by training loss. An epoch skipped by `--val-every` is never the best after the first."""
    if validating and scores is None and f"val_{key}" not in row and progress.best_epoch:
        return False
    score = row.get(f"val_{key}", -row.get("train_loss", math.inf))   # without validation data: lower train loss
    if progress.best_epoch == 0 or score > progress.best_map:   # the first epoch is the best so far, whatever its score
        progress.best_map, progress.best_epoch, progress.bad_validations = score, progress.epoch, 0
        progress.best_metrics = dict(scores) if scores else {"loss": row.get("train_loss", math.nan)}
        return True
    if scores is not None:
        progress.bad_validations += 1
    return False


def _write_epoch(setup: DetectSetup, progress: DetectProgress, out: Path, improved: bool) -> None:
    record = {**setup.record, "epoch": progress.epoch}
    weights = eval_model(setup).state_dict()
    checkpoint.save_weights(out / "last.safetensors", weights, record)
    if improved:
        checkpoint.save_weights(out / "best.safetensors", weights, record)
    checkpoint.save_train_state(out / "train_state.safetensors", _state(setup, progress))
    write_epoch_log(out / "log.csv", progress.history)


def _epoch_line(row: dict[str, float], epochs: int, key_metric: str = "map") -> str:
    parts = [f"epoch {int(row['epoch'])}/{epochs}", f"train_loss {row.get('train_loss', math.nan):.4f}"]
    for key in ("val_loss", f"val_{key_metric}", f"val_{key_metric}50", "val_pixel_acc"):
        if key in row:
            parts.append(f"{key} {row[key]:.4f}")
    parts.append(f"{row['train_images_per_s']:.1f} img/s")
    parts.append(f"{row['epoch_time_s']:.1f}s")
    return "  ".join(parts)


def run_training(setup: DetectSetup, *, announce: Callable[[DetectSetup, DetectProgress], None],
                 write_results: Callable[[DetectSetup, DetectProgress, dict[str, float], Path], None],
                 callbacks: Sequence[EpochCallback] = ()) -> dict[str, float]:
    """Resume or start, write the config, fit, then report: what `detect train` and `segment train` share.

    Returns the best validation's metrics with the run's epochs and training time (OUT/metrics.json).
    """
    from ninshiki.config import to_yaml
    from ninshiki.io import write_text

    cfg, out = setup.config, Path(setup.config.out)
    progress = restore(setup, out) if cfg.resume else DetectProgress()
    if setup.runtime.is_main:
        write_text(out / "config.yaml", to_yaml(cfg))
        announce(setup, progress)
    progress = fit(setup, progress, callbacks=callbacks)
    metrics = {**progress.best_metrics, "best_epoch": float(progress.best_epoch), "epochs": float(progress.epoch),
               "train_time_s": progress.train_seconds}
    if setup.runtime.is_main:
        write_results(setup, progress, metrics, out)
    return metrics
