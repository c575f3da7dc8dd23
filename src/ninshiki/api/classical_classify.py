"""`ninshiki classify train` for classical classifiers (Bag-of-Features, VLAD, Fisher Vector, HOG + SVM).

They are fit once on the whole training set instead of trained by epochs, so this path replaces the
epoch loop: gather the training images, `fit`, then score the validation split with the same batches,
metric and report as every network. The weights file (best.safetensors, with last.safetensors the same
file) carries the usual record, with mean 0 and std 1: classical models take the pixels in [0, 1].
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from ninshiki.config import TrainConfig, parse_model_kwargs, to_yaml
from ninshiki.engine import checkpoint
from ninshiki.engine.batches import Batch, Normalizer, make_batches
from ninshiki.engine.loop import evaluate_batches
from ninshiki.engine.runtime import make_runtime
from ninshiki.io import write_json, write_text
from ninshiki.tasks.classify import ClassifyTask


def model_kwargs_for(model: str, task: str, given: dict) -> dict:
    """The factory's keywords: a model that serves several tasks (hog_svm) is told which one."""
    from ninshiki.registry import model_info

    info = model_info(model)
    if task not in info.tasks:
        raise ValueError(f"{model!r} is a {'/'.join(info.tasks)} model; `ninshiki {task}` needs one of "
                         f"`ninshiki models --task {task}`")
    return {**given, "task": task} if info.also_tasks else dict(given)


def gather(batches, batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Every readable image of a split at once: (N, C, H, W) uint8, (N,) labels, skipped-file messages."""
    images, labels, skipped = [], [], []
    batch: Batch
    for batch in batches.iterate(batch_size=batch_size, shuffle=False, generator=torch.Generator()):
        images.append(batch.images.cpu())
        labels.append(batch.labels.cpu())
        skipped.extend(batch.skipped)
    return torch.cat(images), torch.cat(labels), skipped


def _refuse_options(config: TrainConfig) -> None:
    if config.weights:
        raise ValueError(f"{config.model} is fit from the data, not fine-tuned: drop --weights (it is for "
                         "`classify val` and `classify predict`)")
    if config.resume:
        raise ValueError(f"{config.model} is fit in one pass; there is no epoch to resume from")


def train(config: TrainConfig) -> dict[str, float]:
    """Fit a classical classifier as `config` says; returns the metrics also written to OUT/metrics.json."""
    from ninshiki.api.classify_train import _load_data
    from ninshiki.models.weights import create_model

    _refuse_options(config)
    kwargs = model_kwargs_for(config.model, "classify", parse_model_kwargs(config.model_kwargs))
    runtime = make_runtime(device="cpu", amp="off", channels_last="off")
    torch.manual_seed(config.seed)
    data = _load_data(config)
    if data.train is None or len(data.train) == 0:
        raise ValueError(f"{config.data}: no training images")
    model = create_model(config.model, num_classes=len(data.classes), in_channels=data.channels, **kwargs)
    images, labels, skipped = gather(make_batches(data.train, runtime, workers=config.workers))
    out = Path(config.out)
    write_text(out / "config.yaml", to_yaml(config))
    print(f"fitting {config.model} on {config.data}: {len(labels)} train / "
          f"{len(data.val) if data.val is not None else 0} val images, {len(data.classes)} classes; cpu",
          file=sys.stderr, flush=True)
    start = time.perf_counter()
    facts = model.fit(images, labels, progress=True) or {}
    seconds = time.perf_counter() - start
    metrics = {"fit_time_s": seconds, "train_time_s": seconds,   # train_time_s: the key compare reads for all
               **{k: float(v) for k, v in facts.items()}}
    normalizer = Normalizer((0.0,) * data.channels, (1.0,) * data.channels)
    record = {"model": config.model, "model_kwargs": kwargs, "task": "classify", "classes": list(data.classes),
              "channels": data.channels, "image_size": list(data.image_size), "mean": list(normalizer.mean),
              "std": list(normalizer.std), "tta": False}
    _save(model, record, out)
    confusion = None
    if data.val is not None and len(data.val):
        scores, confusion, val_skipped = _validate(model, data, normalizer, runtime, config.batch_size)
        metrics.update(scores)
        skipped += val_skipped
    _write(out, metrics, confusion, data.classes, list(data.skipped) + skipped)
    return metrics


def _save(model, record: dict, out: Path) -> None:
    for name in ("best.safetensors", "last.safetensors"):   # save_weights writes atomically
        checkpoint.save_weights(out / name, model.state_dict(), record)


def _validate(model, data, normalizer: Normalizer, runtime, batch_size: int):
    task = ClassifyTask()
    metric = task.metric(len(data.classes), data.classes)
    batches = make_batches(data.val, runtime, workers=0)
    start = time.perf_counter()
    with torch.inference_mode():
        loss, skipped = evaluate_batches(model.eval(), task, batches.iterate(batch_size=batch_size, shuffle=False,
                                                                            generator=torch.Generator()),
                                         normalizer, runtime, metric)
    seconds = time.perf_counter() - start
    scores = {**metric.compute(), "loss": loss, "images": float(metric.count),
              "images_per_s": float(metric.count) / max(seconds, 1e-9)}
    return scores, metric.confusion.cpu(), skipped


def _write(out: Path, metrics: dict[str, float], confusion, classes: list[str], skipped: list[str]) -> None:
    from ninshiki.api.reports import write_classification_report

    write_json(out / "metrics.json", metrics)
    if confusion is not None:
        write_classification_report(out, confusion, classes)
    if skipped:
        write_text(out / "skipped.txt", "\n".join(skipped) + "\n")
        print(f"skipped {len(skipped)} unreadable file(s); listed in {out / 'skipped.txt'}", file=sys.stderr)
    best = f"top-1 {metrics['top1']:.4f}" if "top1" in metrics else "fitted"
    print(f"{best} (fit in {metrics['fit_time_s']:.1f} s); results in {out}", flush=True)
