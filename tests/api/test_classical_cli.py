"""The classical models through the same commands as the networks: classify and detect train / val / predict,
OpenCV's pretrained detectors by name, and `ninshiki compare`."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from ninshiki.cli import main
from ninshiki.engine import checkpoint

BOF = ["--model", "bof_sift", "--model-kwargs", "{k: 32, pca_dim: 16, pyramid: [1, 2]}", "--image-size", "24",
       "--workers", "0"]
HAAR = ["--model", "haar_cascade", "--model-kwargs", "{num_stages: 3, num_negatives: 300, feature_step: 4}",
        "--workers", "0"]


@pytest.fixture(scope="module")
def bof_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("classical") / "bof"
    assert main(["classify", "train", "--data", "digits", *BOF, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("faces") / "faces"
    assert main(["data", "synth", "faces", "--out", str(root), "--train", "24", "--val", "6", "--image-size", "128",
                 "--seed", "2"]) == 0
    return root


def test_classical_classifier_trains_validates_and_predicts_like_a_network(bof_run: Path, tmp_path: Path) -> None:
    metrics = json.loads((bof_run / "metrics.json").read_text())
    assert metrics["top1"] > 0.85 and metrics["fit_time_s"] > 0
    for name in ("best.safetensors", "last.safetensors", "config.yaml", "confusion.png", "per_class.csv"):
        assert (bof_run / name).is_file(), name
    record = checkpoint.read_record(bof_run / "best.safetensors")
    assert record["task"] == "classify" and record["mean"] == [0.0] and record["std"] == [1.0]
    assert main(["classify", "val", "--data", "digits", "--weights", str(bof_run / "best.safetensors"),
                 "--out", str(tmp_path / "val")]) == 0
    assert json.loads((tmp_path / "val" / "metrics.json").read_text())["top1"] == metrics["top1"]
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.full((8, 8), 200, np.uint8)).save(photos / "blank.png")
    assert main(["classify", "predict", "--weights", str(bof_run / "best.safetensors"), "--source", str(photos),
                 "--out", str(tmp_path / "pred")]) == 0
    assert (tmp_path / "pred" / "predictions.json").is_file()


def test_hog_svm_serves_classify_and_detect(tmp_path: Path) -> None:
    assert main(["classify", "train", "--data", "digits", "--model", "hog_svm", "--out", str(tmp_path / "h")]) == 0
    assert json.loads((tmp_path / "h" / "metrics.json").read_text())["top1"] > 0.9
    assert checkpoint.read_record(tmp_path / "h" / "best.safetensors")["model_kwargs"] == {"task": "classify"}


def test_classical_runs_refuse_what_they_cannot_do(bof_run: Path, tmp_path: Path, capsys) -> None:
    weights = str(bof_run / "best.safetensors")
    assert main(["classify", "train", "--data", "digits", *BOF, "--weights", weights, "--out", str(tmp_path)]) == 2
    assert "fit from the data" in capsys.readouterr().err
    assert main(["classify", "train", "--data", "digits", "--model", "haar_cascade", "--out", str(tmp_path)]) == 2
    assert "'haar_cascade' is a detect model" in capsys.readouterr().err


def test_viola_jones_trains_on_generated_faces_and_val_reproduces_it(faces: Path, tmp_path: Path) -> None:
    out = tmp_path / "vj"
    assert main(["detect", "train", "--data", str(faces), *HAAR, "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["stages"] >= 1 and 0.0 <= metrics["map50"] <= 1.0
    assert (out / "pr_curves.png").is_file() and (out / "val_predictions.json").is_file()
    assert main(["detect", "val", "--data", str(faces), "--weights", str(out / "best.safetensors"), "--workers", "0",
                 "--out", str(tmp_path / "val")]) == 0
    again = json.loads((tmp_path / "val" / "metrics.json").read_text())
    assert again["map"] == pytest.approx(metrics["map"], abs=1e-12)


def test_opencv_cascade_by_name_finds_what_opencv_finds(tmp_path: Path) -> None:
    from skimage import data

    photo = tmp_path / "astronaut.png"
    Image.fromarray(data.astronaut()).save(photo)
    assert main(["detect", "predict", "--model", "haar_cascade", "--weights", "opencv:haarcascade_frontalface_default",
                 "--image-size", "512", "--source", str(photo), "--out", str(tmp_path / "p")]) == 0
    found = json.loads((tmp_path / "p" / "predictions.json").read_text())
    reference = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    expected = reference.detectMultiScale(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY))
    assert len(expected) >= 1
    boxes = sorted(tuple(round(v) for v in p["bbox"]) for p in found if p["score"] >= 0.25)
    assert boxes == sorted(tuple(int(v) for v in box) for box in expected)
    assert (tmp_path / "p" / "images" / "astronaut.png").is_file()


def test_compare_writes_one_table_for_classical_and_deep_models(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    assert main(["compare", "classify", "--data", "digits", "--models", "hog_svm,alexnet_small", "--epochs", "1",
                 "--speed-images", "64", "--out", str(out)]) == 0
    table = (out / "compare.md").read_text()
    assert "| hog_svm | classical |" in table and "| alexnet_small | deep |" in table
    rows = (out / "compare.csv").read_text().splitlines()
    assert rows[0] == "model,kind,top1,train_s,cpu_images_per_s" and len(rows) == 3
    assert (out / "compare.png").stat().st_size > 10_000
    assert main(["compare", "classify", "--data", "digits", "--models", "hog_svm,ssd_lite", "--out", str(out)]) == 2
