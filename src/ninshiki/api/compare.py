"""`ninshiki compare classify|detect`: train chosen classical and deep models on one dataset and put their
accuracy (or mAP), training time and CPU images/s in one table (CSV, Markdown) with a plot.

Every model runs through the same command a user would type (`classify train` / `detect train`, into
OUT/<model>/), so the table compares the real pipelines. Speed is measured the same way for all: the
trained weights scoring validation images on the CPU, with the threads torch has.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import torch

from ninshiki.config import TrainConfig, to_yaml
from ninshiki.config_compare import CompareConfig
from ninshiki.config_detect import DetectEvalConfig, DetectTrainConfig
from ninshiki.io import write_text

TASKS = ("classify", "detect")


def compare(config: CompareConfig, task: str) -> list[dict[str, Any]]:
    """Train and time each of `config.models`; returns the table's rows, also written under OUT."""
    from ninshiki.registry import model_info

    if task not in TASKS:
        raise ValueError(f"compare: task must be one of {TASKS}, got {task!r}")
    if not config.data:
        raise ValueError("compare needs --data")
    names = config.model_names()
    for name in names:                       # fail before hours of training, not after
        if task not in model_info(name).tasks:
            raise ValueError(f"{name!r} is not a {task} model; see `ninshiki models --task {task}`")
    out = Path(config.out)
    write_text(out / "config.yaml", to_yaml(config))
    rows = []
    for i, name in enumerate(names, 1):
        print(f"[{i}/{len(names)}] {name}", file=sys.stderr, flush=True)
        row = _classify_row(config, name, out / name) if task == "classify" else _detect_row(config, name, out / name)
        rows.append({"model": name, "kind": "classical" if model_info(name).classical else "deep", **row})
    write_tables(rows, out, task)
    return rows


def _classify_row(config: CompareConfig, name: str, out: Path) -> dict[str, Any]:
    from ninshiki.api.classify_train import train

    options = {k: v for k, v in (("epochs", config.epochs), ("batch_size", config.batch_size),
                                 ("image_size", config.image_size)) if v is not None}
    metrics = train(TrainConfig(data=config.data, data_root=config.data_root, train_limit=config.train_limit,
                                model=name, model_kwargs=config.options_of(name), seed=config.seed, out=str(out),
                                **options))
    return {"top1": metrics.get("top1", float("nan")), "train_s": metrics.get("train_time_s", float("nan")),
            "cpu_images_per_s": classify_speed(out / "best.safetensors", config)}


def classify_speed(weights: Path, config: CompareConfig) -> float:
    """Validation images per second through the trained classifier on the CPU (decoding excluded)."""
    from ninshiki.api.weights_record import load_classifier
    from ninshiki.data.datasets import load_classification_data
    from ninshiki.engine.batches import make_batches
    from ninshiki.engine.runtime import make_runtime

    trained = load_classifier(str(weights))
    data = load_classification_data(config.data, data_root=config.data_root, image_size=trained.image_size,
                                    channels=trained.channels, seed=config.seed)
    runtime = make_runtime(device="cpu", amp="off", channels_last="off")
    images = []
    for batch in make_batches(data.val, runtime, workers=0).iterate(batch_size=64, shuffle=False,
                                                                    generator=torch.Generator()):
        images.append(batch.images)
        if sum(len(x) for x in images) >= config.speed_images:
            break
    model = trained.model.cpu().eval()
    with torch.inference_mode():
        model(trained.normalizer(images[0][:2]))            # warm-up: first-call allocations, lazy state
        start = time.perf_counter()
        for chunk in images:
            model(trained.normalizer(chunk))
        seconds = time.perf_counter() - start
    return sum(len(x) for x in images) / max(seconds, 1e-9)


def _detect_row(config: CompareConfig, name: str, out: Path) -> dict[str, Any]:
    from ninshiki.api.detect_eval import evaluate
    from ninshiki.api.detect_train import train

    options = {k: v for k, v in (("epochs", config.epochs), ("time_limit", config.time_limit),
                                 ("batch_size", config.batch_size), ("image_size", config.image_size))
               if v is not None}
    metrics = train(DetectTrainConfig(data=config.data, model=name, model_kwargs=config.options_of(name),
                                      seed=config.seed, out=str(out), **options))
    scores = evaluate(DetectEvalConfig(data=config.data, weights=str(out / "best.safetensors"), device="cpu",
                                       seed=config.seed, out=str(out / "val_cpu"), workers=0))
    return {"map": scores["map"], "map50": scores["map50"], "train_s": metrics.get("train_time_s", float("nan")),
            "cpu_images_per_s": scores["images_per_s"]}


def write_tables(rows: list[dict[str, Any]], out: Path, task: str) -> None:
    """OUT/compare.csv, compare.md and compare.png."""
    import csv
    import io

    from ninshiki.viz.compare import save_comparison_plot

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(out / "compare.csv", buffer.getvalue())
    write_text(out / "compare.md", markdown_table(rows))
    save_comparison_plot(rows, "top1" if task == "classify" else "map50", out / "compare.png")
    print(markdown_table(rows), flush=True)
    print(f"results in {out}", flush=True)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" if c in ("model", "kind") else "---:"
                                                            for c in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row[c]) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)
