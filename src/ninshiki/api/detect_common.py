"""What `detect train`, `val` and `predict` share: the model's recipe, its weights record, the reports."""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ninshiki.io import write_json, write_text

# The augmentation each family was published with: SSD's photometric distortion, zoom-out and IoU crops;
# YOLO's scale jitter and colour changes; Faster R-CNN and R-CNN trained on flipped images only.
AUGMENT_BY_FAMILY = {"ssd": "ssd", "yolov1": "yolo", "faster_rcnn": "basic", "rcnn": "basic"}
# The CPU-scale models train on short schedules, where flips converge much faster than the papers' heavy
# augmentation (ssd_lite, 4 minutes: mAP 0.199 with flips, 0.006 with SSD's; benchmarks/RESULTS.md).
SHORT_SCHEDULE_SUFFIXES = ("_small", "_lite")


def augment_mode(model: str, requested: str) -> str:
    """`--augment auto`: flips for the CPU-scale models, the paper's augmentation for the paper's models."""
    if requested != "auto":
        return requested
    if model.endswith(SHORT_SCHEDULE_SUFFIXES):
        return "basic"
    family = next((f for f in sorted(AUGMENT_BY_FAMILY, key=len, reverse=True) if model.startswith(f)), None)
    return AUGMENT_BY_FAMILY.get(family, "basic")


@dataclass
class TrainedDetector:
    model: nn.Module
    name: str
    classes: list[str]
    image_size: int
    category_ids: list[int] | None


def detector_record(*, model: str, model_kwargs: dict[str, Any], classes: list[str], image_size: int,
                    category_ids: list[int] | None, task: str = "detect") -> dict[str, Any]:
    """What every detection (or instance-segmentation) weights file says about itself, so val and predict
    need nothing else."""
    return {"model": model, "model_kwargs": model_kwargs, "task": task, "classes": list(classes),
            "image_size": int(image_size), "category_ids": list(category_ids) if category_ids else None}


def load_detector(weights: str, model: str | None = None, image_size: int | None = None, *,
                  task: str = "detect") -> TrainedDetector:
    from ninshiki.api.classical_detect import is_opencv_weights, load_opencv_detector
    from ninshiki.api.weights_record import read_task_record
    from ninshiki.models.weights import create_model

    if is_opencv_weights(weights) and task == "detect":
        return load_opencv_detector(weights, model, image_size)
    record = read_task_record(weights, task=task, model=model)
    net = create_model(record["model"], num_classes=len(record["classes"]), weights=weights,
                       **record.get("model_kwargs", {}))
    size = int(image_size or record["image_size"])
    net.input_size = size
    return TrainedDetector(net.eval(), record["model"], list(record["classes"]), size, record.get("category_ids"))


def per_class_table(scores: dict[str, float], classes: list[str]) -> list[dict[str, Any]]:
    rows = []
    for name in classes:
        rows.append({"class": name, "ap": scores.get(f"ap/{name}", math.nan), "ap50": scores.get(f"ap50/{name}", math.nan),
                     "voc12_ap50": scores.get(f"voc12_ap50/{name}", math.nan)})
    return rows


def write_per_class(out: Path, scores: dict[str, float], classes: list[str]) -> None:
    """OUT/per_class_ap.csv and a Markdown table of it (per_class_ap.md)."""
    rows = per_class_table(scores, classes)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()} for row in rows)
    write_text(out / "per_class_ap.csv", buffer.getvalue())
    lines = ["| class | AP@[.5:.95] | AP@.5 | VOC12 AP@.5 |", "|---|---:|---:|---:|"]
    lines += [f"| {r['class']} | {r['ap']:.3f} | {r['ap50']:.3f} | {r['voc12_ap50']:.3f} |" for r in rows]
    write_text(out / "per_class_ap.md", "\n".join(lines) + "\n")


def write_detection_report(out: Path, metric: Any, scores: dict[str, float], classes: list[str]) -> None:
    """metrics.json, the per-class AP table, precision-recall curves and the miss-rate curve."""
    from ninshiki.viz.miss_rate import save_miss_rate_curves
    from ninshiki.viz.pr_curves import save_pr_curves

    write_json(out / "metrics.json", {k: float(v) for k, v in scores.items()})
    write_per_class(out, scores, classes)
    curves = metric.curves()
    save_pr_curves(curves, out / "pr_curves.png")
    save_miss_rate_curves(curves, out / "miss_rate.png")


def coco_results(detections: dict[int, Any], image_ids: list[int], category_ids: list[int], *,
                 rles: dict[int, list[dict[str, Any]]] | None = None) -> list[dict[str, Any]]:
    """COCO result-format records (bbox xywh) of detections keyed by dataset index.

    Values keep full float32 precision: rounded scores tie and rounded boxes shift IoUs, and then scoring the
    file with pycocotools would not reproduce metrics.json exactly.

    Instance masks, from `rles` (`EvalResult.rles`, keyed like `detections`) or else from the detections'
    own `masks` (in original-image pixels), add a "segmentation": compressed RLE with ``counts`` a str.
    Records then hold both "bbox" and "segmentation"; pycocotools' `loadRes` takes the areas of its size
    ranges from "bbox" when present, so drop it before a "segm" evaluation for mask areas (as Detectron2
    does, and as `InstanceMetric` computes); AP and AR over all areas are the same either way.
    """
    records = []
    for index in sorted(detections):
        det = detections[index]
        masks = _masks_rles(det, rles.get(index) if rles is not None else None, index)
        for j, (box, score, label) in enumerate(zip(det.boxes.tolist(), det.scores.tolist(), det.labels.tolist())):
            x1, y1, x2, y2 = box
            record = {"image_id": int(image_ids[index]), "category_id": int(category_ids[label]),
                      "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(score)}
            if masks is not None:
                record["segmentation"] = masks[j]
            records.append(record)
    return records


def _masks_rles(det: Any, rles: list[dict[str, Any]] | None, index: int) -> list[dict[str, Any]] | None:
    """JSON-ready compressed RLEs of one image's detections, or None for box-only detections."""
    if rles is None and getattr(det, "masks", None) is None:
        return None
    if rles is None:
        from ninshiki.metrics.instance import encode_masks

        rles = encode_masks(det.masks)
    if len(rles) != len(det):
        raise ValueError(f"image {index}: {len(rles)} masks for {len(det)} detections")
    return [{"size": [int(v) for v in rle["size"]],
             "counts": rle["counts"].decode("ascii") if isinstance(rle["counts"], bytes) else rle["counts"]}
            for rle in rles]


def ground_truth(annotated: Any, *, with_masks: bool = False) -> list[Any]:
    """GroundTruth of every image of an AnnotatedSet, in the upright (EXIF-applied) pixels detections use.

    With `with_masks` each keeps its objects' segmentations (moved upright too) for mask AP; without, they are
    dropped, so box-only evaluation neither turns RLEs of rotated images nor holds them in memory.
    """
    from dataclasses import replace

    from ninshiki.data.detection import upright_annotation
    from ninshiki.metrics.detection import GroundTruth

    images = annotated.images if with_masks else [replace(image, segmentations=None) for image in annotated.images]
    return [GroundTruth.from_annotated(upright_annotation(image, annotated.path(image))) for image in images]
