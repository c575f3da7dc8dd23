"""`ninshiki classify predict`: top-k classes for an image, a folder or a glob of images."""
from __future__ import annotations

import csv
import glob
import io
import sys
import warnings
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ninshiki.api.weights_record import TrainedClassifier, load_classifier
from ninshiki.config import PredictConfig
from ninshiki.engine.loop import predict_logits
from ninshiki.engine.runtime import make_runtime
from ninshiki.io import write_json, write_text
from ninshiki.tasks.classify import ClassifyTask


def find_images(source: str) -> list[Path]:
    """An image file, a folder (searched recursively) or a glob pattern -> sorted image paths."""
    from ninshiki.data.formats.imagefolder import is_image_file

    path = Path(source)
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and is_image_file(p)
                      and not any(part.startswith(".") for part in p.relative_to(path).parts))
    if glob.has_magic(source):
        return sorted(Path(p) for p in glob.glob(source, recursive=True) if Path(p).is_file())
    raise FileNotFoundError(f"--source {source}: no such file or folder")


def _batches(paths: list[Path], trained: TrainedClassifier, *, batch_size: int, workers: int) -> DataLoader:
    """Decode and size the images in DataLoader workers. Each item's label is its index in `paths`, so a
    batch says which files it kept; unreadable files come back as "path: reason" messages."""
    from ninshiki.data.datasets import FileSplit, collate_skipping

    files = FileSplit([str(p) for p in paths], list(range(len(paths))), trained.image_size, channels=trained.channels)
    return DataLoader(files, batch_size=batch_size, num_workers=workers, collate_fn=collate_skipping)


@torch.no_grad()
def predict(config: PredictConfig) -> list[dict]:
    """Classify every image of `config.source`; returns one dict per image (path, top-k labels and probabilities)."""
    from ninshiki.metrics.classification import topk_predictions

    if not config.weights:
        raise ValueError("classify predict needs --weights")
    paths = find_images(config.source)
    if not paths:
        raise FileNotFoundError(f"--source {config.source}: no image files found")
    runtime = make_runtime(device=config.device, amp="off", channels_last="off")
    device = runtime.device
    trained = load_classifier(config.weights, config.model)
    model = trained.model.to(device)
    results, skipped, shown = [], [], []
    batches = _batches(paths, trained, batch_size=config.batch_size, workers=config.workers)
    for images, index, bad in tqdm(batches, desc="predict", unit="batch", leave=False, disable=None):
        for message in bad:
            warnings.warn(f"skipped unreadable image {message}", stacklevel=2)
        skipped.extend(bad)
        if len(index) == 0:
            continue
        kept = [paths[i] for i in index.tolist()]
        logits = predict_logits(model, ClassifyTask(), trained.normalizer(images.to(device)), runtime,
                                flip_tta=trained.tta if config.tta is None else config.tta)
        for path, top in zip(kept, topk_predictions(logits.float().cpu(), config.topk, trained.classes)):
            results.append({"path": str(path), "top": [{"label": label, "prob": prob} for label, prob in top]})
        if len(shown) < 32:
            shown.extend(images[: 32 - len(shown)])
    _write(Path(config.out), results, skipped, shown)
    return results


def _write(out: Path, results: list[dict], skipped: list[str], shown: list[torch.Tensor]) -> None:
    from ninshiki.viz.predictions import save_prediction_grid

    write_json(out / "predictions.json", results)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "rank", "label", "prob"])
    for item in results:
        writer.writerows([item["path"], rank, top["label"], f"{top['prob']:.6f}"]
                         for rank, top in enumerate(item["top"], start=1))
    write_text(out / "predictions.csv", buffer.getvalue())
    if shown:
        firsts = [(r["top"][0]["label"], r["top"][0]["prob"]) for r in results[: len(shown)]]
        save_prediction_grid(torch.stack(shown), firsts, out / "predictions.png")
    if skipped:
        write_text(out / "skipped.txt", "\n".join(skipped) + "\n")
        print(f"skipped {len(skipped)} unreadable file(s); listed in {out / 'skipped.txt'}", file=sys.stderr)
    print(f"classified {len(results)} image(s); results in {out}", flush=True)
