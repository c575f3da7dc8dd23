"""The detection half of `ninshiki demo`: generated data, a detector trained against the clock, its mAP,
and its boxes drawn on images it never saw.

Generates 300 training and 60 validation images of shapes and glyphs on scikit-image's photos, trains
`ssd_lite` for `seconds` of CPU time, evaluates it with the COCO and VOC metrics, and draws what it finds.
"""
from __future__ import annotations

from pathlib import Path

from ninshiki.config_detect import DetectEvalConfig, DetectPredictConfig, DetectTrainConfig

DEMO_DETECTOR = "ssd_lite"
DEMO_SIZE = 256


def _draw_grid(images_dir: Path, weights: str, path: Path, device: str, count: int = 8) -> None:
    from ninshiki.api.detect_common import load_detector
    from ninshiki.api.detect_predict import detect_images
    from ninshiki.data.images import read_image
    from ninshiki.engine.runtime import resolve_device
    from ninshiki.viz.detections import save_detection_grid

    trained = load_detector(weights)
    target = resolve_device(device)
    model = trained.model.to(target)
    model.score_threshold = 0.3
    files = sorted(images_dir.iterdir())[:count]
    images = [read_image(f) for f in files]
    detections = detect_images(model, images, trained.image_size, target)
    save_detection_grid(images, detections, trained.classes, path, cell=DEMO_SIZE, score_threshold=0.3)


def run_detect_demo(root: Path, *, seconds: float = 75.0, device: str = "auto") -> dict[str, float]:
    """Everything under `root`; returns the validation metrics."""
    from ninshiki.api.detect_eval import evaluate
    from ninshiki.api.detect_predict import predict
    from ninshiki.api.detect_train import train
    from ninshiki.data.synthetic import synth_detect

    data = synth_detect(root / "shapes", train=300, val=60, image_size=DEMO_SIZE, seed=0, progress=False)
    print(f"ninshiki demo: training {DEMO_DETECTOR} for {seconds:.0f} s on generated shapes ({data})", flush=True)
    train(DetectTrainConfig(data=str(data / "coco.yaml"), model=DEMO_DETECTOR, image_size=DEMO_SIZE, epochs=200,
                            time_limit=seconds, batch_size=16, lr=3e-3, augment="basic", val_every=1000,
                            workers=0, device=device, out=str(root / "train")))
    weights = str(root / "train" / "best.safetensors")
    metrics = evaluate(DetectEvalConfig(data=str(data), weights=weights, workers=0, device=device,
                                        out=str(root / "val")))
    predict(DetectPredictConfig(source=str(data / "images" / "val"), weights=weights, score_threshold=0.3,
                                device=device, out=str(root / "predict")))
    _draw_grid(data / "images" / "val", weights, root / "predict" / "grid.png", device)
    return metrics
