"""`ninshiki detect train` for classical detectors (Viola-Jones, HOG + SVM), and OpenCV's pretrained ones.

A classical detector is fit once from the training images (boosting rounds or hard-negative mining rounds
inside `fit`), then scored on the validation split by the same COCO / VOC evaluation and report as the
networks. `--weights opencv:NAME` names one of OpenCV's own detectors instead of a weights file:
`opencv:haarcascade_frontalface_default` (any cascade in `cv2.data.haarcascades`) for `haar_cascade`,
`opencv:default_people` or `opencv:daimler_people` for `hog_svm`.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

from ninshiki.api.classical_classify import model_kwargs_for
from ninshiki.api.detect_common import TrainedDetector, coco_results, detector_record, write_detection_report
from ninshiki.config import parse_model_kwargs, to_yaml
from ninshiki.config_detect import DetectTrainConfig, require
from ninshiki.engine import checkpoint
from ninshiki.engine.runtime import make_runtime
from ninshiki.io import write_json, write_text

OPENCV_PREFIX = "opencv:"


def is_opencv_weights(weights: str | None) -> bool:
    return bool(weights) and str(weights).startswith(OPENCV_PREFIX)


def load_opencv_detector(weights: str, model: str | None, image_size: int | None) -> TrainedDetector:
    """One of OpenCV's pretrained classical detectors, as a `TrainedDetector` (its classes from its name)."""
    name = weights[len(OPENCV_PREFIX):]
    model = model or ("haar_cascade" if name.startswith("haarcascade") else "hog_svm")
    if model == "haar_cascade":
        from ninshiki.models.classical.haar_cascade import haar_cascade_from_opencv
        net = haar_cascade_from_opencv(name)
    elif model == "hog_svm":
        from ninshiki.models.classical.hog_svm import hog_svm_from_opencv
        net = hog_svm_from_opencv(name)
    else:
        raise ValueError(f"--weights {weights}: OpenCV's pretrained detectors load into haar_cascade or hog_svm, "
                         f"not {model!r}")
    if image_size:
        net.input_size = int(image_size)
    return TrainedDetector(net.eval(), model, list(net.extra_record()["classes"]), int(net.input_size), None)


def _image_size(config: DetectTrainConfig, train) -> int:
    """The side images are letterboxed to: as given, else the largest side among the training images."""
    if config.image_size:
        return int(config.image_size)
    return int(max(max(img.width, img.height) for img in train.images))


def train(config: DetectTrainConfig) -> dict[str, float]:
    """Fit a classical detector; returns the validation metrics, also in OUT/metrics.json."""
    from ninshiki.api.detect_eval import evaluate_split
    from ninshiki.data.detection_data import load_detection_data
    from ninshiki.models.weights import create_model

    require(config, "data")
    if config.weights or config.resume:
        raise ValueError(f"{config.model} is fit from the data in one pass: drop --weights / --resume (use "
                         "`detect val` or `detect predict` with --weights opencv:NAME for OpenCV's own detectors)")
    kwargs = model_kwargs_for(config.model, "detect", parse_model_kwargs(config.model_kwargs))
    torch.manual_seed(config.seed)
    np.random.seed(config.seed % 2**32)
    data = load_detection_data(config.data, split_seed=config.seed, val_fraction=config.val_fraction)
    if not data.train.images:
        raise ValueError(f"{config.data}: no training images")
    if summary := data.summary():
        print(summary, file=sys.stderr)
    model = create_model(config.model, num_classes=len(data.classes), **kwargs)
    model.input_size = size = _image_size(config, data.train)
    out = Path(config.out)
    write_text(out / "config.yaml", to_yaml(config))
    print(f"fitting {config.model} on {config.data}: {len(data.train.images)} train / "
          f"{len(data.val.images) if data.val else 0} val images, {len(data.classes)} classes; cpu",
          file=sys.stderr, flush=True)
    start = time.perf_counter()
    facts = model.fit(data.train, progress=True) or {}
    seconds = time.perf_counter() - start
    record = detector_record(model=config.model, model_kwargs=kwargs, classes=data.classes, image_size=size,
                             category_ids=data.train.category_ids)
    for name in ("best.safetensors", "last.safetensors"):   # save_weights writes atomically
        checkpoint.save_weights(out / name, model.state_dict(), record)
    metrics = {"fit_time_s": seconds, "train_time_s": seconds, **{k: float(v) for k, v in facts.items()}}
    if data.val is None or not data.val.images:
        write_json(out / "metrics.json", metrics)
        print(f"fitted in {seconds:.1f} s; results in {out}", flush=True)
        return metrics
    model.score_threshold, model.max_detections = config.score_threshold, config.max_detections
    runtime = make_runtime(device="cpu", amp="off", channels_last="off")
    scores, result, metric = evaluate_split(model.eval(), data.val, data.classes, size, runtime,
                                            batch_size=config.batch_size, workers=config.workers)
    metrics.update(scores)
    write_detection_report(out, metric, metrics, data.classes)
    image_ids = [img.image_id if img.image_id is not None else i + 1 for i, img in enumerate(data.val.images)]
    category_ids = data.train.category_ids or list(range(1, len(data.classes) + 1))
    write_json(out / "val_predictions.json", coco_results(result.detections, image_ids, category_ids))
    print(f"mAP@[.5:.95] {metrics['map']:.4f}, mAP@.5 {metrics['map50']:.4f} (fit in {seconds:.1f} s); "
          f"results in {out}", flush=True)
    return metrics
