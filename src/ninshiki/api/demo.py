"""`ninshiki demo`: the toolkit end to end on built-in data, in a few minutes on a laptop CPU.

Classification: trains a small AlexNet on scikit-learn's handwritten digits (shipped with scikit-learn, so
it works offline everywhere), evaluates it, draws its confusion matrix and first-layer filters, and
classifies a few held-out images saved as PNG files, as a user's photos would be. Detection and
segmentation: see `demo_detect.py` and `demo_segment.py`.
"""
from __future__ import annotations

from pathlib import Path

from PIL import Image

from ninshiki.config import EvalConfig, PredictConfig, TrainConfig

DEMO_MODEL = "alexnet_small"
DEMO_IMAGE_SIZE = 32   # the 8x8 digits upscaled, so a 5x5 first layer has something to see


def _write_samples(folder: Path, count: int = 24) -> Path:
    """Save `count` validation digits as PNG files to classify like a user's images."""
    from ninshiki.data.datasets import load_classification_data

    data = load_classification_data("digits", image_size=DEMO_IMAGE_SIZE, seed=0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(min(count, len(data.val))):
        image, label = data.val[i]
        Image.fromarray(image[0].numpy(), mode="L").save(folder / f"{i:02d}_true_{data.classes[label]}.png")
    return folder


def run_demo(*, out: str = "runs/demo", epochs: int | None = None, device: str = "auto", task: str = "all",
             detect_seconds: float = 75.0, segment_seconds: float = 60.0) -> Path:
    """Run the classification, detection and/or segmentation demo (`task`: classify, detect, segment or all)
    under `out`."""
    root = Path(out)
    lines = []
    if task in ("classify", "all"):
        top1 = _classify_demo(root / "classify" if task == "all" else root, epochs=epochs, device=device)
        lines.append(f"classification: validation top-1 {top1:.3f} ({root / 'classify' if task == 'all' else root})")
    if task in ("detect", "all"):
        from ninshiki.api.demo_detect import run_detect_demo

        where = root / "detect" if task == "all" else root
        metrics = run_detect_demo(where, seconds=detect_seconds, device=device)
        lines.append(f"detection: validation mAP@[.5:.95] {metrics['map']:.3f}, mAP@.5 {metrics['map50']:.3f}; "
                     f"boxes drawn in {where / 'predict' / 'grid.png'}")
    if task in ("segment", "all"):
        from ninshiki.api.demo_segment import run_segment_demo

        where = root / "segment" if task == "all" else root
        shapes = root / "detect" / "shapes" if task == "all" else None   # the detection half's data, reused
        metrics = run_segment_demo(where, seconds=segment_seconds, device=device, data=shapes)
        lines.append(f"segmentation: validation mIoU {metrics['miou']:.3f}, pixel accuracy "
                     f"{metrics['pixel_acc']:.3f}; image / truth / prediction in {where / 'val' / 'samples.png'}")
    print("\ndemo finished:\n  " + "\n  ".join(lines) + f"\nresults: {root.resolve()}", flush=True)
    return root


def _classify_demo(root: Path, *, epochs: int | None, device: str) -> float:
    from ninshiki.api.classify_eval import evaluate
    from ninshiki.api.classify_filters import save_filters
    from ninshiki.api.classify_predict import predict
    from ninshiki.api.classify_train import train

    print(f"ninshiki demo: training {DEMO_MODEL} on scikit-learn's digits ({DEMO_IMAGE_SIZE}x{DEMO_IMAGE_SIZE}), "
          f"writing to {root}", flush=True)
    train(TrainConfig(data="digits", image_size=DEMO_IMAGE_SIZE, model=DEMO_MODEL, epochs=epochs or 15,
                      batch_size=64, lr=0.05, weight_decay=5e-4, augment="crop", label_smoothing=0.1,
                      device=device, out=str(root / "train")))
    weights = str(root / "train" / "best.safetensors")
    metrics = evaluate(EvalConfig(data="digits", weights=weights, device=device, out=str(root / "val")))
    save_filters(model=DEMO_MODEL, weights=weights, out=str(root / "val"))
    samples = _write_samples(root / "samples")
    predict(PredictConfig(source=str(samples), weights=weights, device=device, out=str(root / "predict")))
    return float(metrics["top1"])
