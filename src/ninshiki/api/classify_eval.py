"""`ninshiki classify val`: evaluate trained weights on a dataset's validation (or test) split."""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from ninshiki.api.weights_record import load_classifier
from ninshiki.config import EvalConfig
from ninshiki.engine.batches import make_batches
from ninshiki.engine.loop import evaluate_batches
from ninshiki.engine.runtime import make_runtime
from ninshiki.io import write_json, write_text
from ninshiki.tasks.classify import ClassifyTask


def _check_classes(data_classes: list[str], trained: list[str], source: str) -> None:
    if list(data_classes) != list(trained):
        missing = sorted(set(trained) - set(data_classes))
        extra = sorted(set(data_classes) - set(trained))
        raise ValueError(f"{source}: its classes differ from the ones the weights were trained on "
                         f"(missing: {missing or 'none'}; unknown to the model: {extra or 'none'}; "
                         "or a different order)")


def evaluate(config: EvalConfig) -> dict[str, float]:
    """Evaluate; returns the metrics also written to OUT/metrics.json."""
    from ninshiki.api.reports import write_classification_report
    from ninshiki.data.datasets import load_classification_data

    if not config.weights:
        raise ValueError("classify val needs --weights")
    runtime = make_runtime(device=config.device, amp="off", channels_last="off")
    trained = load_classifier(config.weights, config.model)
    data = load_classification_data(config.data, data_root=config.data_root, val_data=config.val_data,
                                    val_split=config.val_split, image_size=trained.image_size,
                                    channels=trained.channels, seed=config.seed, strict=config.strict,
                                    memory_limit_mb=config.memory_limit_mb)
    _check_classes(data.classes, trained.classes, config.data)
    if data.val is None or len(data.val) == 0:
        raise ValueError(f"{config.data}: no validation images")
    task = ClassifyTask()
    metric = task.metric(len(trained.classes), trained.classes)
    model = trained.model.to(runtime.device)
    batches = make_batches(data.val, runtime, workers=config.workers)
    loss, skipped = evaluate_batches(model, task, batches.iterate(batch_size=config.batch_size, shuffle=False,
                                                                  generator=torch.Generator()),
                                     trained.normalizer, runtime, metric,
                                     flip_tta=trained.tta if config.tta is None else config.tta)
    metrics = {"loss": loss, **metric.compute(), "images": float(metric.count)}
    out = Path(config.out)
    if runtime.is_main:
        write_json(out / "metrics.json", metrics)
        write_classification_report(out, metric.confusion.cpu(), trained.classes)
        skipped = list(data.skipped) + skipped
        if skipped:
            write_text(out / "skipped.txt", "\n".join(skipped) + "\n")
            print(f"skipped {len(skipped)} unreadable file(s); listed in {out / 'skipped.txt'}", file=sys.stderr)
        split = "test" if data.val_is_test else "validation"
        print(f"{split} top-1 {metrics['top1']:.4f}"
              + (f"  top-5 {metrics['top5']:.4f}" if "top5" in metrics else "")
              + f"  loss {loss:.4f} on {int(metric.count)} images; results in {out}", flush=True)
    return metrics
