import json

from ninshiki.cli import main


def test_demo_writes_every_result_and_prints_where(tmp_path, capsys) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--task", "classify", "--out", str(out), "--epochs", "2", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert str(out.resolve()) in printed
    for name in ("train/best.safetensors", "train/metrics.json", "train/curves.png", "val/metrics.json",
                 "val/confusion.png", "val/filters.png", "predict/predictions.json", "predict/predictions.png"):
        assert (out / name).is_file(), name
    assert json.loads((out / "val" / "metrics.json").read_text())["top1"] > 0.5   # chance is 0.1
    predictions = json.loads((out / "predict" / "predictions.json").read_text())
    assert len(predictions) == len(list((out / "samples").glob("*.png"))) == 24


def test_detection_demo_trains_evaluates_and_draws(tmp_path, capsys) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--task", "detect", "--detect-seconds", "4", "--out", str(out), "--device", "cpu"]) == 0
    assert "mAP@[.5:.95]" in capsys.readouterr().out
    for name in ("shapes/coco.yaml", "train/best.safetensors", "val/metrics.json", "val/pr_curves.png",
                 "predict/predictions.json", "predict/grid.png"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "val" / "metrics.json").read_text())
    assert 0.0 <= metrics["map"] <= metrics["map50"] <= 1.0
    assert len(json.loads((out / "predict" / "images.json").read_text())) == 60


def test_segmentation_demo_trains_evaluates_and_draws(tmp_path, capsys) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--task", "segment", "--segment-seconds", "3", "--out", str(out), "--device", "cpu"]) == 0
    assert "mIoU" in capsys.readouterr().out
    for name in ("shapes/classes.csv", "train/best.safetensors", "train/curves.png", "val/metrics.json",
                 "val/samples.png", "val/per_class_iou.csv", "predict/predictions.json", "predict/classes.json"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "val" / "metrics.json").read_text())
    assert 0.0 < metrics["miou"] <= 1.0 and 0.0 < metrics["pixel_acc"] <= 1.0 and metrics["images"] == 60.0
    predictions = json.loads((out / "predict" / "predictions.json").read_text())
    assert len(predictions) == len(list((out / "predict" / "masks").glob("*.png"))) == 60
    assert len(list((out / "predict" / "images").glob("*.png"))) == 60
