"""`ninshiki verify train`: an embedding network (FaceNet-style) trained with the triplet or contrastive loss on
P x K batches of the training identities, validated every epoch on held-out validation identities (open set;
`verify_split` splits the identities three ways and never reads the test identities' images).

The learning rate warms up linearly, then follows a cosine to zero, stepped every iteration; with
`--time-limit` the number of epochs is re-planned after each from the pace so far and the schedule stretched
to fit (as the detection trainer does). Every epoch writes last.safetensors (and best.safetensors when the
key metric improved on the validation identities, or every epoch without validation) with a record that
`verify val|enroll|identify` need nothing beside, including the validation's accuracy-maximising threshold,
and train_state.safetensors for `--resume`.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ninshiki.api.verify_eval import EvalSide, generate_pairs, labels_of, write_eval_pairs
from ninshiki.api.verify_split import TrainData, describe_identities, load_train_data
from ninshiki.config import parse_model_kwargs, resolve_resume, to_yaml
from ninshiki.config_verify import VerifyTrainConfig
from ninshiki.data.pk_sampler import PKSampler
from ninshiki.data.verification import IndexPairs
from ninshiki.engine import checkpoint
from ninshiki.engine.batches import MemoryBatches, Normalizer, StreamBatches, epoch_generator, make_batches
from ninshiki.engine.logs import write_epoch_log
from ninshiki.engine.optim import lr_factor, make_optimizer, make_scheduler
from ninshiki.engine.runtime import Runtime, make_runtime
from ninshiki.engine.verify_loop import VerifyStepContext, embed_split, pk_batches, rank_metrics, score_pairs
from ninshiki.engine.verify_loop import train_one_epoch as train_epoch
from ninshiki.io import write_json, write_text


@dataclass
class VerifyProgress:
    """What survives between epochs, saved in train_state.safetensors."""
    epoch: int = 0                       # epochs finished
    planned_epochs: int = 0              # the schedule's length (re-planned under a time limit)
    global_step: int = 0
    train_seconds: float = 0.0
    best_score: float | None = None
    best_epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best_metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class VerifySetup:
    config: VerifyTrainConfig
    runtime: Runtime
    ctx: VerifyStepContext
    batches: MemoryBatches | StreamBatches
    sampler: PKSampler
    val: EvalSide | None                 # the validation identities' images
    pairs: IndexPairs | None             # validation pairs over `val`'s rows
    record: dict[str, Any]               # written into every weights file
    skipped: list[str] = field(default_factory=list)
    identities: str = ""                 # which identities train, validate and test, for the log


def _model_kwargs(config: VerifyTrainConfig) -> dict[str, Any]:
    kwargs = parse_model_kwargs(config.model_kwargs)
    own = {"embedding_dim": config.embedding_dim, "loss": config.loss, "mining": config.mining, "margin": config.margin}
    clash = sorted(set(kwargs) & set(own))
    if clash:
        raise ValueError(f"model_kwargs: give {', '.join(clash)} with their own flags (--{clash[0].replace('_', '-')})")
    return {**kwargs, **own}


def _build_model(config: VerifyTrainConfig, channels: int, record: dict[str, Any]) -> nn.Module:
    from ninshiki.models.weights import create_model, load_weights

    model = create_model(config.model, num_classes=0, in_channels=channels, **_model_kwargs(config))
    if config.weights:
        task = record.get("task")
        if task == "verify":
            load_weights(model, config.weights)         # fine-tuning: a new embedding size keeps a fresh last layer
        elif task in (None, "classify"):
            try:
                model.load_trunk_weights(config.weights)
            except RuntimeError as err:
                raise ValueError(f"{config.weights} does not fit the trunk of {config.model}: {err}") from None
        else:
            raise ValueError(f"{config.weights}: holds a {task!r} model; verify train starts from a verify or "
                             "classify run's weights, or a classifier's state dict")
    return model


def _normalizer(record: dict[str, Any], train, channels: int) -> Normalizer:
    if "mean" in record and len(record["mean"]) == channels:   # the statistics the weights were trained with
        return Normalizer(tuple(record["mean"]), tuple(record["std"]))
    from ninshiki.data.splits import InMemorySplit, Unreadable

    if isinstance(train, InMemorySplit):
        return Normalizer.fit(train.images)
    picks = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:256].tolist()
    images = [item[0] for item in (train[i] for i in picks) if not isinstance(item, Unreadable)]
    if not images:
        raise ValueError("no readable training image to compute normalisation statistics from")
    return Normalizer.fit(torch.stack(images))


def _record(config: VerifyTrainConfig, data: TrainData, normalizer: Normalizer) -> dict[str, Any]:
    return {"model": config.model, "model_kwargs": _model_kwargs(config), "task": "verify",
            "image_size": list(data.image_size), "channels": data.channels, "mean": list(normalizer.mean),
            "std": list(normalizer.std), "embedding_dim": config.embedding_dim, "metric": "cosine",
            "data": config.data, "test_identities": list(data.test_identities),
            "val_identities": list(data.val_identities)}


def _sampler(config: VerifyTrainConfig, labels: np.ndarray) -> PKSampler:
    """P x K batches; P is lowered to the number of training identities when there are fewer (ten classes
    split 6 / 4 have six), since a batch cannot hold an identity twice."""
    usable = int((np.bincount(labels) >= 2).sum())
    p = config.p
    if 2 <= usable < p:
        p = usable
        print(f"p lowered from {config.p} to the {usable} training identities (raise --k for larger batches)",
              file=sys.stderr)
    return PKSampler(labels, p=p, k=config.k, seed=config.seed, batches_per_epoch=config.batches_per_epoch)


def _check_model(name: str) -> None:
    from ninshiki.registry import model_info

    task = model_info(name).task
    if task != "verify":
        raise ValueError(f"{name} is a {task} model; verify train needs an embedding network "
                         "(`ninshiki models --task verify`)")


def build_setup(config: VerifyTrainConfig, runtime: Runtime) -> VerifySetup:
    _check_model(config.model)      # before the data is loaded
    torch.manual_seed(config.seed)
    start = checkpoint.read_record(config.weights) if config.weights else {}
    data = load_train_data(config.data, test_classes=config.test_classes, test_fraction=config.test_fraction,
                           val_classes=config.val_classes, val_fraction=config.val_fraction, seed=config.seed,
                           data_root=config.data_root, image_size=config.image_size,
                           channels=start.get("channels") if start.get("task") == "verify" else None,
                           strict=config.strict, memory_limit_mb=config.memory_limit_mb)
    normalizer = _normalizer(start, data.train, data.channels)
    bare = _build_model(config, data.channels, start).to(runtime.device)
    if runtime.channels_last:
        bare.to(memory_format=torch.channels_last)
    model = torch.compile(bare) if config.compile else bare
    sampler = _sampler(config, labels_of(data.train))
    optimizer = make_optimizer(bare, name=config.optimizer, lr=config.lr, weight_decay=config.weight_decay,
                               momentum=config.momentum)
    scheduler = make_scheduler(optimizer, lambda step: 1.0)      # fit() sets the real schedule
    ctx = VerifyStepContext(model=model, bare=bare, optimizer=optimizer, scheduler=scheduler, normalizer=normalizer,
                            runtime=runtime, clip_grad=config.clip_grad)
    pairs = None
    if data.val is not None:
        pairs = generate_pairs(data.val.labels, per_fold=config.pairs_per_fold, folds=config.folds, seed=config.seed)
    return VerifySetup(config, runtime, ctx, make_batches(data.train, runtime, workers=config.workers), sampler,
                       data.val, pairs, _record(config, data, normalizer), list(data.skipped),
                       describe_identities(data))


def set_schedule(setup: VerifySetup, epochs: int) -> None:
    """Point the per-step scheduler at a warmup + cosine schedule of `epochs` epochs (keeps its step count).

    The next step's learning rate is set from the new schedule too: the old one set it (the placeholder's full
    rate before the first step, which would skip the warmup's start; the plan before a re-planning). LambdaLR
    computes the same product on its steps, so a resumed run's rate is bit-identical to an uninterrupted one's.
    """
    steps = len(setup.sampler)
    factor = lr_factor(schedule="cosine", total_steps=steps * epochs, steps_per_epoch=steps,
                       warmup_steps=round(setup.config.warmup_epochs * steps))
    scheduler, groups = setup.ctx.scheduler, setup.ctx.optimizer.param_groups
    scheduler.lr_lambdas = [factor] * len(groups)
    for group, base in zip(groups, scheduler.base_lrs):
        group["lr"] = base * factor(scheduler.last_epoch)


def validate(setup: VerifySetup) -> dict[str, float]:
    """Verification metrics on the validation pairs and rank-k identification of the validation identities."""
    from ninshiki.metrics.verification import VerificationMetric

    assert setup.val is not None and setup.pairs is not None
    full_precision = replace(setup.runtime, amp_dtype=None)   # the embeddings (and threshold) `verify val` gets
    embeddings, kept, skipped = embed_split(setup.ctx.bare, setup.val.split, setup.ctx.normalizer, full_precision,
                                            workers=setup.config.workers)
    setup.skipped += [m for m in skipped if m not in setup.skipped]
    scores, used = score_pairs(embeddings, setup.pairs, kept=kept)
    metric = VerificationMetric()
    metric.update(scores, setup.pairs.same[used], setup.pairs.fold[used])
    return {**metric.compute(), **rank_metrics(embeddings, setup.val.labels, kept=kept,
                                               per_identity=setup.config.gallery_per_identity)}


def run_epoch(setup: VerifySetup, epoch: int, progress: VerifyProgress, deadline: float | None
              ) -> tuple[dict[str, Any], bool]:
    from ninshiki.engine.augment import augment_batch

    cfg, ctx = setup.config, setup.ctx
    ctx.augment = (None if cfg.augment == "none" else
                   partial(augment_batch, mode=cfg.augment, generator=epoch_generator(cfg.seed + 7919, epoch)))
    setup.sampler.set_epoch(epoch)
    bar = tqdm(total=len(setup.sampler), desc=f"epoch {epoch + 1}/{progress.planned_epochs}", unit="batch",
               leave=False, disable=None, dynamic_ncols=True)
    start = time.perf_counter()
    with bar:
        row, progress.global_step, skipped, stopped = train_epoch(
            ctx, pk_batches(setup.batches, setup.sampler, workers=cfg.workers), epoch=epoch,
            global_step=progress.global_step, progress=bar, deadline=deadline)
    setup.skipped += [m for m in skipped if m not in setup.skipped]
    progress.train_seconds += time.perf_counter() - start
    row = {"epoch": float(epoch + 1), "lr": ctx.scheduler.get_last_lr()[0], **row,
           "epoch_time_s": time.perf_counter() - start}
    metrics = validate(setup) if setup.val is not None else {}
    row.update({f"val_{k}": v for k, v in metrics.items()})
    return {**row, "_metrics": metrics}, stopped


def _replan(setup: VerifySetup, progress: VerifyProgress) -> None:
    """Under a time limit: as many epochs as fit in what is left of it, at the mean pace so far."""
    pace = progress.train_seconds / max(progress.epoch, 1)
    left = setup.config.time_limit - progress.train_seconds
    planned = max(progress.epoch, progress.epoch + math.floor(left / max(pace, 1e-9)))
    if planned != progress.planned_epochs:
        progress.planned_epochs = planned
        set_schedule(setup, max(planned, 1))
        print(f"time limit {setup.config.time_limit:.0f}s: {pace:.1f}s per epoch, planning {planned} epochs",
              flush=True)


def fit(setup: VerifySetup, progress: VerifyProgress) -> VerifyProgress:
    cfg, out = setup.config, Path(setup.config.out)
    if not progress.planned_epochs:
        progress.planned_epochs = cfg.epochs
        set_schedule(setup, cfg.epochs)
    while progress.epoch < progress.planned_epochs:
        deadline = time.perf_counter() + cfg.time_limit - progress.train_seconds if cfg.time_limit else None
        row, stopped = run_epoch(setup, progress.epoch, progress, deadline)
        metrics = row.pop("_metrics")
        progress.epoch += 1
        progress.history.append(row)
        score = metrics[cfg.key_metric] if metrics else -row.get("train_loss", math.inf)
        improved = not metrics or progress.best_score is None or score > progress.best_score  # no validation: last
        if improved:
            progress.best_score, progress.best_epoch = score, progress.epoch
            progress.best_metrics = metrics or {"train_loss": row.get("train_loss", math.nan)}
        print(_epoch_line(row, progress.planned_epochs), flush=True)
        if cfg.time_limit is not None and not stopped:
            _replan(setup, progress)       # before saving: the state saved is the one the next epoch starts from
        _write_epoch(setup, progress, metrics, out, improved)
        if stopped:
            break
    return progress


def _write_epoch(setup: VerifySetup, progress: VerifyProgress, metrics: dict[str, float], out: Path,
                 improved: bool) -> None:
    record = {**setup.record, "epoch": progress.epoch}
    if metrics:   # the accuracy-maximising threshold on cosine similarity, for `verify identify`
        record.update(threshold=metrics["threshold"], val_metrics=metrics)
    weights = setup.ctx.bare.state_dict()
    checkpoint.save_weights(out / "last.safetensors", weights, record)
    if improved:
        checkpoint.save_weights(out / "best.safetensors", weights, record)
    ctx = setup.ctx
    checkpoint.save_train_state(out / "train_state.safetensors", {
        "progress": dict(vars(progress)), "model": weights, "optimizer": ctx.optimizer.state_dict(),
        "scheduler": {k: v for k, v in ctx.scheduler.state_dict().items() if k != "lr_lambdas"},
        "rng": checkpoint.rng_states()})
    write_epoch_log(out / "log.csv", progress.history)


def restore(setup: VerifySetup, run_dir: Path) -> VerifyProgress:
    """Load train_state.safetensors of `run_dir` into the setup; returns where to continue."""
    state = checkpoint.load_train_state(run_dir / "train_state.safetensors")
    setup.ctx.bare.load_state_dict(state["model"])
    setup.ctx.optimizer.load_state_dict(state["optimizer"])
    groups = len(setup.ctx.optimizer.param_groups)
    setup.ctx.scheduler.load_state_dict({**state["scheduler"], "lr_lambdas": [None] * groups})
    checkpoint.restore_rng_states(state["rng"])
    progress = VerifyProgress(**state["progress"])
    if setup.config.time_limit is None:        # the config may have been given more epochs since
        progress.planned_epochs = setup.config.epochs
    set_schedule(setup, progress.planned_epochs)
    return progress


def _epoch_line(row: dict[str, float], epochs: int) -> str:
    parts = [f"epoch {int(row['epoch'])}/{epochs}", f"train_loss {row.get('train_loss', math.nan):.4f}"]
    active = row.get("train_active_triplets", row.get("train_active_pairs"))
    if active is not None:
        parts.append(f"active {active:.3f}")
    parts += [f"{key} {row[key]:.4f}" for key in ("val_auc", "val_eer", "val_best_acc", "val_rank1") if key in row]
    parts.append(f"{row['train_images_per_s']:.0f} img/s")
    parts.append(f"{row['epoch_time_s']:.1f}s")
    return "  ".join(parts)


def train(config: VerifyTrainConfig) -> dict[str, float]:
    """Train an embedding network as `config` says; returns the metrics also written to OUT/metrics.json."""
    config = resolve_resume(config)
    if not config.data:
        raise ValueError("verify train needs --data (identity folders, a CSV list or a built-in name)")
    runtime = make_runtime(device=config.device, amp=config.amp, channels_last=config.channels_last)
    if runtime.distributed:
        raise ValueError("verify train runs in one process; data-parallel (torchrun) training is not supported yet")
    setup = build_setup(config, runtime)
    out = Path(config.out)
    progress = restore(setup, out) if config.resume else VerifyProgress()
    write_text(out / "config.yaml", to_yaml(config))
    if setup.pairs is not None and setup.val is not None:
        write_eval_pairs(out / "val_pairs.txt", setup.pairs, setup.val)
    _announce(setup, progress)
    progress = fit(setup, progress)
    metrics = {**progress.best_metrics, "best_epoch": float(progress.best_epoch), "epochs": float(progress.epoch),
               "train_time_s": progress.train_seconds}
    _write_results(setup, progress, metrics, out)
    return metrics


def _announce(setup: VerifySetup, progress: VerifyProgress) -> None:
    cfg, rt, model = setup.config, setup.runtime, setup.ctx.bare
    params = sum(p.numel() for p in model.parameters()) / 1e6
    what = f"resuming at epoch {progress.epoch + 1}" if progress.epoch else "training"
    loss = f"{cfg.loss} loss{f' ({cfg.mining})' if cfg.loss == 'triplet' else ''}, margin {model.margin:g}"
    held = (f"validating on {len(setup.val.labels)} images of {len(np.unique(setup.val.labels))} validation "
            f"identities, {len(setup.pairs)} pairs" if setup.val is not None and setup.pairs is not None
            else "no validation identities: best.safetensors = last")
    print(f"{what} {cfg.model} ({params:.2f}M params, {cfg.embedding_dim}-d, {loss}) on {cfg.data}: "
          f"{len(setup.batches)} images of {setup.sampler.num_identities} training identities, "
          f"{setup.sampler.p} x {cfg.k} batches, {len(setup.sampler)} per epoch; {held}; {rt.device} "
          f"{'bf16' if rt.amp_dtype is torch.bfloat16 else 'fp32'}\n{setup.identities}", file=sys.stderr, flush=True)


def _write_results(setup: VerifySetup, progress: VerifyProgress, metrics: dict[str, float], out: Path) -> None:
    write_json(out / "metrics.json", metrics)
    save_verify_curves(out / "log.csv", out / "curves.png")
    if setup.skipped:
        write_text(out / "skipped.txt", "\n".join(setup.skipped) + "\n")
        print(f"skipped {len(setup.skipped)} unreadable file(s); listed in {out / 'skipped.txt'}", file=sys.stderr)
    best = (f"validation AUC {metrics['auc']:.4f}, accuracy {metrics['best_acc']:.4f} at epoch {progress.best_epoch}"
            if "auc" in metrics else "done")
    print(f"{best}; results in {out}", flush=True)


def save_verify_curves(log_csv: Path, png: Path) -> Path:
    """Training loss (learning rate dashed) and the validation's AUC, accuracy and rank-1 per epoch."""
    from ninshiki.viz._render import new_figure, save_figure
    from ninshiki.viz.curves import read_log

    log = read_log(log_csv)
    figure = new_figure(10.0, 4.0)
    panels = figure.subplots(1, 2)
    for ax, columns, label in ((panels[0], ("train_loss",), "loss"),
                               (panels[1], ("val_auc", "val_best_acc", "val_rank1", "val_tar@far=1e-3"), "score")):
        for name in columns:
            keep = np.isfinite(log[name]) if name in log else np.zeros(0, bool)
            if keep.any():
                ax.plot(log["epoch"][keep], log[name][keep], marker="o", markersize=3, label=name)
        if ax.lines:
            ax.legend(loc="best", fontsize=8)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    if "lr" in log and np.isfinite(log["lr"]).any():
        lr_ax = panels[0].twinx()
        lr_ax.plot(log["epoch"], log["lr"], color="gray", linestyle="--", linewidth=1)
        lr_ax.set_ylabel("learning rate (dashed)", color="gray")
    return save_figure(figure, png)
