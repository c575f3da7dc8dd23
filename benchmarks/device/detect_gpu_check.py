"""GPU check of every detector: one short training epoch in bf16 with channels_last, then validation,
on a small generated set; prints images/s and mAP so the CUDA path of `detect train` is exercised.

    python benchmarks/device/detect_gpu_check.py --data runs/bench/shapes_small --out runs/gpu
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

import torch

from ninshiki.api.detect_train import train
from ninshiki.config_detect import DetectTrainConfig

MODELS = {"ssd_lite": 320, "yolov1_small": 320, "faster_rcnn_small": 320, "ssd300_vgg16": 300,
          "faster_rcnn_resnet50_fpn": 512, "faster_rcnn_vgg16": 512, "yolov1": 448}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    print(torch.__version__, torch.cuda.get_device_name(), flush=True)
    rows = []
    for model, size in MODELS.items():
        config = DetectTrainConfig(data=str(Path(args.data) / "coco.yaml"), model=model, image_size=size,
                                   epochs=args.epochs, batch_size=32, lr=1e-3, workers=4, device="cuda",
                                   out=str(Path(args.out) / model))
        start = time.perf_counter()
        try:
            metrics = train(config)
            log = (Path(config.out) / "log.csv").read_text().splitlines()
            rows.append({"model": model, "ok": True, "s": time.perf_counter() - start, "map": metrics.get("map"),
                         "last_epoch": log[-1]})
        except Exception:   # report every model, then fail at the end
            traceback.print_exc()
            rows.append({"model": model, "ok": False})
        print(json.dumps(rows[-1]), flush=True)
    sys.exit(0 if all(r["ok"] for r in rows) else 1)


if __name__ == "__main__":
    main()
