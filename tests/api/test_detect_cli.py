"""The detection CLI end to end on a small generated set: synth, convert, train, val, predict, resume."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ninshiki.cli import main
from ninshiki.engine import checkpoint

TRAIN = ["--model", "ssd_lite", "--image-size", "128", "--batch-size", "8", "--workers", "0", "--device", "cpu",
         "--augment", "basic"]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "shapes"
    assert main(["data", "synth", "detect", "--out", str(root), "--train", "16", "--val", "6",
                 "--image-size", "128", "--seed", "3"]) == 0
    return root


@pytest.fixture(scope="module")
def trained(shapes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "ssd"
    assert main(["detect", "train", "--data", str(shapes / "coco.yaml"), *TRAIN, "--epochs", "2",
                 "--out", str(out)]) == 0
    return out


def test_train_writes_weights_metrics_and_pictures(trained: Path) -> None:
    for name in ("best.safetensors", "last.safetensors", "train_state.safetensors", "config.yaml", "log.csv",
                 "curves.png", "pr_curves.png", "miss_rate.png", "per_class_ap.csv", "per_class_ap.md",
                 "val_predictions.json"):
        assert (trained / name).is_file(), name
    metrics = json.loads((trained / "metrics.json").read_text())
    for key in ("map", "map50", "map75", "map_small", "map_medium", "voc07_map50", "voc12_map50", "ap/circle"):
        assert key in metrics, key
    assert metrics["epochs"] == 2.0
    record = checkpoint.read_record(trained / "best.safetensors")
    assert record["task"] == "detect" and record["image_size"] == 128 and "circle" in record["classes"]


def test_val_equals_pycocotools_on_its_own_predictions(shapes: Path, trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "val"
    assert main(["detect", "val", "--data", str(shapes), "--weights", str(trained / "best.safetensors"),
                 "--workers", "0", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    predictions = json.loads((out / "predictions.json").read_text())
    assert predictions, "an untrained-ish detector at threshold 0.001 still proposes boxes"
    gt = COCO(str(shapes / "annotations" / "instances_val.json"))
    evaluator = COCOeval(gt, gt.loadRes(predictions), "bbox")
    evaluator.evaluate(), evaluator.accumulate(), evaluator.summarize()
    assert metrics["map"] == pytest.approx(max(evaluator.stats[0], 0.0), abs=1e-12)
    assert metrics["map50"] == pytest.approx(max(evaluator.stats[1], 0.0), abs=1e-12)


def test_predict_on_a_folder_and_a_video(shapes: Path, trained: Path, tmp_path: Path) -> None:
    folder = shapes / "images" / "val"
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5, (128, 128))
    for path in sorted(folder.iterdir())[:4]:
        writer.write(cv2.imread(str(path)))
    writer.release()
    (tmp_path / "notes.txt").write_text("not an image")
    for source, drawn in ((str(folder), "images"), (str(video), "clip_detections.mp4")):
        out = tmp_path / f"pred_{Path(source).name}"
        assert main(["detect", "predict", "--weights", str(trained / "best.safetensors"), "--source", source,
                     "--score-threshold", "0.01", "--out", str(out)]) == 0
        images = json.loads((out / "images.json").read_text())
        assert len(images) == (6 if drawn == "images" else 4)
        for record in json.loads((out / "predictions.json").read_text()):
            assert set(record) >= {"image_id", "category_id", "bbox", "score"}
            assert record["score"] >= 0.01
        assert (out / drawn).exists()
    frames = cv2.VideoCapture(str(tmp_path / "pred_clip.mp4" / "clip_detections.mp4"))
    assert int(frames.get(cv2.CAP_PROP_FRAME_COUNT)) == 4


def test_resume_continues_to_the_planned_epochs(shapes: Path, trained: Path, tmp_path: Path) -> None:
    run = tmp_path / "resumed"
    assert main(["detect", "train", "--data", str(shapes / "coco.yaml"), *TRAIN, "--epochs", "1",
                 "--out", str(run)]) == 0
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("epochs: 1", "epochs: 2"))
    assert main(["detect", "train", "--resume", str(run), "--workers", "0"]) == 0   # data comes from OUT's config
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 2.0


def test_convert_voc_to_coco(shapes: Path, tmp_path: Path) -> None:
    out = tmp_path / "voc_val.json"
    assert main(["data", "convert", "--from", "voc", "--to", "coco", str(shapes / "VOC"), "--image-set", "val",
                 "--out", str(out)]) == 0
    ours = json.loads(out.read_text())
    original = json.loads((shapes / "annotations" / "instances_val.json").read_text())
    assert len(ours["annotations"]) == len(original["annotations"])
    boxes = sorted(tuple(np.round(a["bbox"], 3)) for a in ours["annotations"])
    assert boxes == sorted(tuple(np.round(a["bbox"], 3)) for a in original["annotations"])


def test_errors_name_the_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["detect", "train", "--data", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "r")]) == 2
    assert "missing.yaml" in capsys.readouterr().err
    assert main(["detect", "train", "--out", str(tmp_path / "r")]) == 2
    assert "--data is required" in capsys.readouterr().err
    assert main(["detect", "train", "--data", "x", "--model", "ssd_lightt", "--out", str(tmp_path / "r")]) == 2
