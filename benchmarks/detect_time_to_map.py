"""COCO mAP@[.5:.95] on the generated validation set against training wall time, for every ninshiki
detector and, as the peer a user would otherwise pick, Ultralytics YOLOv8n trained from scratch
(`yolov8n.yaml`, no pretrained weights) on the same images at the same size within the same budget.

Each system trains in its own process under the same wall-clock budget (ours with `--time-limit`, which
re-plans the epochs after the first one and stretches the schedule to fit; Ultralytics with `time=`, which
does the same), then detects on the validation images with a score threshold of 0.001 and at most 100
boxes per image. Every system's detections are scored by the same pycocotools evaluation. Images/s is
batched inference on the CPU, decoding and pre-processing included.

Ultralytics is AGPL-3.0, so it is installed on demand into a virtual environment of its own
(`--peer-venv`, made with --system-site-packages so it reuses the installed torch; it pulls opencv-python
5.x, which would replace our OpenCV anywhere else) and never imported here.

    python benchmarks/detect_time_to_map.py                      # all detectors + YOLOv8n, 15 min each
    python benchmarks/detect_time_to_map.py --budget 300 --models ssd_lite,faster_rcnn_small --no-peer
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe_machine  # noqa: E402

HERE = Path(__file__).resolve().parent
# Each detector's recipe for a CPU budget: its CLI flags besides data, budget and output. Flips only
# (`--augment basic`): within 15 minutes (7-28 epochs here) SSD's zoom-out and IoU crops leave ssd_lite at
# mAP 0.006 where flips reach 0.199 after 4 minutes (see RESULTS.md for that trial's caveat).
RECIPES: dict[str, list[str]] = {
    "ssd_lite": ["--batch-size", "16", "--lr", "3e-3", "--optimizer", "adamw", "--augment", "basic"],
    "faster_rcnn_small": ["--batch-size", "8", "--lr", "2e-3", "--optimizer", "adamw", "--augment", "basic"],
    "yolov1_small": ["--batch-size", "16", "--lr", "1e-3", "--optimizer", "adamw", "--augment", "basic"],
    "rcnn": ["--batch-size", "8", "--lr", "2e-3", "--optimizer", "adamw", "--augment", "basic",
             "--model-kwargs", "{search_side: 224}"],
}
# Not trainable from scratch on 2 CPU cores in 15 minutes (10-270M parameters at 300-800 px): ssd300_vgg16,
# faster_rcnn_vgg16, faster_rcnn_resnet50_fpn, yolov1. `--models` takes them for a GPU run.


def ensure_data(root: Path, train: int, val: int, size: int) -> Path:
    if not (root / "coco.yaml").exists():
        subprocess.run(["ninshiki", "data", "synth", "detect", "--out", str(root), "--train", str(train),
                        "--val", str(val), "--image-size", str(size)], check=True)
    return root


def run_ninshiki(model: str, data: Path, budget: float, out: Path) -> dict:
    run = out / model
    start = time.perf_counter()
    subprocess.run(["ninshiki", "detect", "train", "--data", str(data / "coco.yaml"), "--model", model,
                    "--time-limit", str(budget), "--epochs", "300", "--val-every", "1000", "--out", str(run),
                    "--workers", "2", *RECIPES.get(model, [])], check=True)
    wall = time.perf_counter() - start
    subprocess.run(["ninshiki", "detect", "val", "--data", str(data / "coco.yaml"), "--weights",
                    str(run / "last.safetensors"), "--out", str(run / "val"), "--batch-size", "8"], check=True)
    metrics = json.loads((run / "val" / "metrics.json").read_text())
    train_log = json.loads((run / "metrics.json").read_text())
    return {"system": f"ninshiki {model}", "train_s": train_log["train_time_s"], "wall_s": wall,
            "epochs": int(train_log["epochs"]), "map": metrics["map"], "map50": metrics["map50"],
            "images_per_s": metrics["images_per_s"]}


def ensure_peer_venv(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "ultralytics"], check=True)
    return python


def score_peer(records: list[dict], data: Path) -> dict[str, float]:
    """The peer's detections scored by the same COCO evaluation as ours (file names -> image ids)."""
    from ninshiki.metrics.coco_eval import coco_evaluate

    gt = json.loads((data / "annotations" / "instances_val.json").read_text())
    ids = {Path(image["file_name"]).name: image["id"] for image in gt["images"]}
    categories = [c["id"] for c in sorted(gt["categories"], key=lambda c: c["id"])]
    results = [{"image_id": ids[r["file_name"]], "category_id": categories[r["label"]], "bbox": r["bbox"],
                "score": r["score"]} for r in records]
    return coco_evaluate(gt, results)


def run_peer(data: Path, budget: float, out: Path, venv: Path, size: int, trained: str | None) -> dict:
    python = ensure_peer_venv(venv)
    run = (out / "yolov8n").resolve()
    start = time.perf_counter()
    reuse = ["--trained", trained] if trained else []
    subprocess.run([str(python), str(HERE / "peers" / "ultralytics_yolov8n.py"), "--data", str(data / "data.yaml"),
                    "--val-images", str(data / "images" / "val"), "--budget", str(budget), "--imgsz", str(size),
                    "--out", str(run), *reuse], check=True, env={**os.environ, "YOLO_OFFLINE": "1"})
    wall = time.perf_counter() - start
    result = json.loads((run / "peer_result.json").read_text())
    scores = score_peer(result["detections"], data)
    return {"system": "Ultralytics YOLOv8n (scratch)", "train_s": result["train_s"], "wall_s": wall,
            "epochs": result.get("epochs", -1),
            "map": scores["map"], "map50": scores["map50"], "images_per_s": result["images_per_s"]}


def table(rows: list[dict], budget: float) -> str:
    lines = [f"| system | mAP@[.5:.95] | mAP@.5 | epochs | train s (budget {budget:.0f}) | images/s |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: -r["map"]):
        epochs = str(r["epochs"]) if r["epochs"] >= 0 else "-"
        lines.append(f"| {r['system']} | {r['map']:.3f} | {r['map50']:.3f} | {epochs} | {r['train_s']:.0f} | "
                     f"{r['images_per_s']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="runs/bench/shapes", help="generated data (made if missing)")
    parser.add_argument("--train", type=int, default=1000)
    parser.add_argument("--val", type=int, default=200)
    parser.add_argument("--image-size", type=int, default=320)
    parser.add_argument("--budget", type=float, default=900.0, help="training seconds per system")
    parser.add_argument("--models", default=",".join(RECIPES))
    parser.add_argument("--no-peer", action="store_true", help="skip Ultralytics YOLOv8n")
    parser.add_argument("--peer-venv", default=".venv-ultralytics")
    parser.add_argument("--peer-trained", help="a finished YOLOv8n run folder to detect with instead of training")
    parser.add_argument("--out", default="runs/bench/detect")
    args = parser.parse_args()
    data = ensure_data(Path(args.data), args.train, args.val, args.image_size)
    out = Path(args.out)
    rows = []
    if not args.no_peer:
        rows.append(run_peer(data, args.budget, out, Path(args.peer_venv), args.image_size, args.peer_trained))
        print(json.dumps(rows[-1]), flush=True)
    for model in filter(None, args.models.split(",")):
        rows.append(run_ninshiki(model, data, args.budget, out))
        print(json.dumps(rows[-1]), flush=True)
    print(describe_machine("cpu"))
    print(table(rows, args.budget))
    (out / "results.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
