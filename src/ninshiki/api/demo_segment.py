"""The segmentation half of `ninshiki demo`: a semantic segmenter trained against the clock on generated
data, its mIoU and per-class IoU, and its class maps drawn over images it never saw.

Uses the generated shapes data (300 training and 60 validation images; made here unless the detection half
already made it), trains `fcn8s_small` for `seconds` of CPU time, evaluates it at the images' own resolution
and draws image / ground truth / prediction side by side (`val/samples.png`) and overlays (`predict/`).
"""
from __future__ import annotations

from pathlib import Path

from ninshiki.config_segment import SegmentEvalConfig, SegmentPredictConfig, SegmentTrainConfig

DEMO_SEGMENTER = "fcn8s_small"
DEMO_SIZE = 256


def run_segment_demo(root: Path, *, seconds: float = 60.0, device: str = "auto", data: Path | None = None
                     ) -> dict[str, float]:
    """Everything under `root`; returns the validation metrics. `data`: generated shapes to reuse."""
    from ninshiki.api.segment_eval import evaluate
    from ninshiki.api.segment_predict import predict
    from ninshiki.api.segment_train import train
    from ninshiki.data.synthetic import synth_detect

    if data is None or not (data / "classes.csv").exists():
        data = synth_detect(root / "shapes", train=300, val=60, image_size=DEMO_SIZE, seed=0, progress=False)
    print(f"ninshiki demo: training {DEMO_SEGMENTER} for {seconds:.0f} s on generated shapes ({data})", flush=True)
    # The low-resolution recipe of benchmarks/segment_time_to_miou.py, scaled to these 256 px images: half-side
    # crops of images scaled by 0.375-0.75, validation at 0.75 scale (recorded, so val and predict reuse it).
    train(SegmentTrainConfig(data=str(data), model=DEMO_SEGMENTER, image_size=DEMO_SIZE // 2, scale_min=0.375,
                             scale_max=0.75, max_size=DEMO_SIZE * 3 // 4, epochs=200, time_limit=seconds,
                             batch_size=8, lr=1e-3, val_every=1000, workers=0, device=device,
                             out=str(root / "train")))
    weights = str(root / "train" / "best.safetensors")
    metrics = evaluate(SegmentEvalConfig(data=str(data), weights=weights, workers=0, device=device,
                                         out=str(root / "val")))
    predict(SegmentPredictConfig(source=str(data / "images" / "val"), weights=weights, device=device,
                                 out=str(root / "predict")))
    return metrics
