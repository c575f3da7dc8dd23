"""The peer of detect_time_to_map.py: Ultralytics YOLOv8n trained from scratch within a time budget.

Ultralytics is AGPL-3.0: it is never a dependency of ninshiki. This script runs only inside a virtual
environment of its own (made on demand by detect_time_to_map.py; Ultralytics pulls opencv-python 5.x,
which must not replace our OpenCV) and talks to the benchmark through files: it writes the validation
images' detections as COCO results, which the benchmark scores with the same pycocotools evaluation as
ours.

    .venv-ultralytics/bin/python benchmarks/peers/ultralytics_yolov8n.py --data DATA.yaml --budget 900 \
        --imgsz 320 --out runs/bench/yolov8n
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def train(data: str, budget_s: float, imgsz: int, out: Path, workers: int, batch: int) -> tuple[object, float]:
    from ultralytics import YOLO

    model = YOLO("yolov8n.yaml")             # the architecture only: no pretrained weights
    start = time.perf_counter()
    # `time` (hours) makes Ultralytics re-plan its epochs and schedule to fit the budget, as ours does.
    model.train(data=data, imgsz=imgsz, epochs=1000, time=budget_s / 3600, batch=batch, device="cpu",
                workers=workers, pretrained=False, amp=False, plots=False, val=False, project=str(out.parent),
                name=out.name, exist_ok=True, seed=0, deterministic=False, verbose=False)
    return model, time.perf_counter() - start


def reuse(run: Path) -> tuple[object, float]:
    """The model of a finished training run and its training seconds (the last row of its results.csv)."""
    from ultralytics import YOLO

    last = (run / "results.csv").read_text().strip().splitlines()[-1]
    return YOLO(str(run / "weights" / "last.pt")), float(last.split(",")[1])


def predict(model, images: list[Path], imgsz: int, batch: int) -> tuple[list[dict], float]:
    """COCO result records keyed by file name (the benchmark maps names to its image ids), and images/s."""
    records: list[dict] = []
    start = time.perf_counter()
    for first in range(0, len(images), batch):
        chunk = [str(p) for p in images[first:first + batch]]
        for path, result in zip(chunk, model.predict(chunk, imgsz=imgsz, conf=0.001, iou=0.7, max_det=100,
                                                     device="cpu", verbose=False)):
            boxes = result.boxes
            for (x1, y1, x2, y2), score, label in zip(boxes.xyxy.tolist(), boxes.conf.tolist(),
                                                      boxes.cls.tolist()):
                records.append({"file_name": Path(path).name, "label": int(label),
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(score)})
    return records, len(images) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="an Ultralytics data.yaml")
    parser.add_argument("--val-images", required=True, help="folder of the validation images")
    parser.add_argument("--budget", type=float, default=900.0, help="training seconds")
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", required=True)
    parser.add_argument("--trained", help="a finished run of this script (its weights/last.pt and results.csv): "
                                          "skip training, detect only")
    args = parser.parse_args()
    os.environ.setdefault("YOLO_OFFLINE", "1")
    out = Path(args.out).resolve()   # absolute: Ultralytics puts a relative project under its own runs folder
    out.mkdir(parents=True, exist_ok=True)
    if args.trained:
        model, train_s = reuse(Path(args.trained))
    else:
        model, train_s = train(args.data, args.budget, args.imgsz, out, args.workers, args.batch)
    images = sorted(p for p in Path(args.val_images).iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    records, images_per_s = predict(model, images, args.imgsz, 8)
    epochs = len((Path(args.trained) if args.trained else out).joinpath("results.csv").read_text().splitlines()) - 1
    (out / "peer_result.json").write_text(json.dumps({"train_s": train_s, "epochs": epochs,
                                                      "images_per_s": images_per_s,
                                                      "detections": records}))


if __name__ == "__main__":
    main()
