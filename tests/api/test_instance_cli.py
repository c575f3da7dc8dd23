"""The `instance` CLI (Mask R-CNN) end to end on a tiny generated set: train, val with mask AP equal to
pycocotools' on the written predictions, predict with drawn masks and RLEs, and the task checks."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from faster_coco_eval.core.mask import decode as decode_rle
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ninshiki.cli import main
from ninshiki.data.images import read_image
from ninshiki.data.synthetic import synth_detect
from ninshiki.engine import checkpoint
from ninshiki.structures import Detections
from ninshiki.viz.detections import draw_detections

CLASSES = ["circle", "square"]
# Two classes, at most two objects an image: six SGD epochs (~9 s on one core) give a non-zero val mask AP
# (no warmup: in so few steps it would spend the first epoch at a hundredth of the rate).
TRAIN = ["--model", "mask_rcnn_small", "--image-size", "64", "--batch-size", "2", "--epochs", "6", "--optimizer",
         "sgd", "--lr", "1e-2", "--warmup-epochs", "0", "--workers", "0", "--device", "cpu"]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth_detect(tmp_path_factory.mktemp("instdata") / "shapes", train=8, val=4, image_size=64, seed=0,
                        classes=CLASSES, max_objects=2, progress=False)


@pytest.fixture(scope="module")
def trained(shapes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("instruns") / "mask_rcnn"
    assert main(["instance", "train", "--data", str(shapes / "coco.yaml"), *TRAIN, "--out", str(out)]) == 0
    return out


def _coco_stats(gt: COCO, records: list[dict], iou_type: str) -> np.ndarray:
    if iou_type == "segm":   # mask areas for the size ranges, as Detectron2 and InstanceMetric do
        records = [{k: v for k, v in r.items() if k != "bbox"} for r in records]
    evaluator = COCOeval(gt, gt.loadRes(records), iou_type)
    evaluator.evaluate(), evaluator.accumulate(), evaluator.summarize()
    return evaluator.stats


def _same(ours: float | None, theirs: float) -> bool:
    """metrics.json holds null (NaN) where pycocotools says -1 (no object of that size)."""
    return ours is None if theirs == -1 else ours == pytest.approx(theirs, abs=1e-12)


def test_train_writes_box_and_mask_metrics(trained: Path) -> None:
    for name in ("best.safetensors", "last.safetensors", "config.yaml", "log.csv", "curves.png", "pr_curves.png",
                 "per_class_ap.csv", "val_predictions.json"):
        assert (trained / name).is_file(), name
    metrics = json.loads((trained / "metrics.json").read_text())
    for key in ("map", "map50", "mask_map", "mask_map50", "mask_map75", "ap/circle"):
        assert key in metrics, key
    assert metrics["epochs"] == 6.0
    record = checkpoint.read_record(trained / "best.safetensors")
    assert record["task"] == "instance" and record["model"] == "mask_rcnn_small" and record["classes"] == CLASSES
    predictions = json.loads((trained / "val_predictions.json").read_text())
    assert predictions and all(set(r["segmentation"]) == {"size", "counts"} for r in predictions)


def test_val_mask_ap_equals_pycocotools_on_its_own_predictions(shapes: Path, trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "val"
    assert main(["instance", "val", "--data", str(shapes), "--weights", str(trained / "best.safetensors"),
                 "--workers", "0", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    predictions = json.loads((out / "predictions.json").read_text())
    assert predictions and all(r["segmentation"]["size"] == [64, 64] for r in predictions)
    assert metrics["mask_map50"] > 0, "a mask AP of 0 would make the comparison below say little"
    gt = COCO(str(shapes / "annotations" / "instances_val.json"))
    masks = _coco_stats(gt, predictions, "segm")
    for i, key in enumerate(("mask_map", "mask_map50", "mask_map75", "mask_map_small", "mask_map_medium")):
        assert _same(metrics[key], max(masks[i], 0.0) if masks[i] != -1 else -1), key
    boxes = _coco_stats(gt, predictions, "bbox")
    assert _same(metrics["map"], max(boxes[0], 0.0)) and _same(metrics["map50"], max(boxes[1], 0.0))


def _detections(records: list[dict], with_masks: bool) -> Detections:
    """predictions.json records of one image back as Detections (category ids 1..K -> labels 0..K-1)."""
    boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (r["bbox"] for r in records)]).reshape(-1, 4)
    masks = torch.from_numpy(np.stack([decode_rle(r["segmentation"]) for r in records])).bool() if with_masks else None
    return Detections(boxes, torch.tensor([r["score"] for r in records]),
                      torch.tensor([r["category_id"] - 1 for r in records]), masks)


def test_predict_draws_masks_and_writes_rles(shapes: Path, trained: Path, tmp_path: Path) -> None:
    out, source, threshold = tmp_path / "pred", shapes / "images" / "val", 0.15
    assert main(["instance", "predict", "--weights", str(trained / "best.safetensors"), "--source", str(source),
                 "--score-threshold", str(threshold), "--out", str(out)]) == 0
    images = {entry["id"]: entry["file_name"] for entry in json.loads((out / "images.json").read_text())}
    assert sorted(images.values()) == sorted(p.name for p in source.glob("*.jpg"))
    records = json.loads((out / "predictions.json").read_text())
    assert records and all(r["score"] >= threshold and r["segmentation"]["size"] == [64, 64] for r in records)
    masked_pixels = 0
    for image_id, name in images.items():
        objects = [r for r in records if r["image_id"] == image_id]
        image = read_image(source / name)                                      # (3, H, W) uint8
        saved = torch.from_numpy(np.array(Image.open(out / "images" / Path(name).with_suffix(".png")))).permute(2, 0, 1)
        if not objects:
            assert torch.equal(saved, image), name
            continue
        with_masks = draw_detections(image, _detections(objects, True), CLASSES, score_threshold=threshold)
        boxes_only = draw_detections(image, _detections(objects, False), CLASSES, score_threshold=threshold)
        assert torch.equal(saved, with_masks), name                   # the written RLEs are what was drawn
        covered = _detections(objects, True).masks.any(0)             # (H, W)
        visible = covered & (boxes_only == image).all(0)              # not under a box outline or a label
        changed = (with_masks != boxes_only).any(0)                   # (H, W): the masks' colours
        assert not changed[~covered].any(), name
        if visible.any():
            assert changed[visible].float().mean() > 0.9, name
        masked_pixels += int(visible.sum())
    assert masked_pixels > 0


def test_detect_and_instance_refuse_each_others_models(shapes: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    data = ["--data", str(shapes), "--image-size", "64", "--epochs", "1", "--workers", "0", "--device", "cpu"]
    assert main(["detect", "train", *data, "--model", "mask_rcnn_small", "--out", str(tmp_path / "d")]) == 2
    assert "'mask_rcnn_small' is a 'instance' model; `ninshiki detect`" in capsys.readouterr().err
    assert main(["instance", "train", *data, "--model", "ssd_lite", "--out", str(tmp_path / "i")]) == 2
    assert "'ssd_lite' is a 'detect' model; `ninshiki instance`" in capsys.readouterr().err
    assert not (tmp_path / "d").exists() and not (tmp_path / "i").exists()


def test_semantic_and_instance_weights_are_not_interchangeable(shapes: Path, trained: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["segment", "val", "--data", str(shapes), "--weights", str(trained / "best.safetensors"),
                 "--workers", "0", "--out", str(tmp_path / "v")]) == 2
    assert "holds a 'instance' model, not a semantic segmenter" in capsys.readouterr().err
