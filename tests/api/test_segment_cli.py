"""The `segment` CLI end to end on a tiny generated set: train (plain, CRF-as-RNN, resumed), val checked against
an independent recomputation from `segment predict`'s class maps, predict on folders, files and videos, and
the errors a user meets."""
from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file
from sklearn.metrics import confusion_matrix

from ninshiki.cli import main
from ninshiki.data.synthetic import DEFAULT_CLASSES, synth_detect
from ninshiki.engine import checkpoint

CLASSES = ["background", *DEFAULT_CLASSES]
RUN = ["--image-size", "64", "--batch-size", "4", "--workers", "0", "--device", "cpu"]
SCORES = ("miou", "pixel_acc", "mean_acc", "fwiou")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth_detect(tmp_path_factory.mktemp("segdata") / "shapes", train=8, val=4, image_size=64, seed=1,
                        progress=False)


@pytest.fixture(scope="module")
def segnet(shapes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SegNet after two epochs: it still predicts most classes somewhere, so comparisons are not all-background."""
    out = tmp_path_factory.mktemp("segruns") / "segnet"
    assert main(["segment", "train", "--data", str(shapes), "--model", "segnet_small", *RUN, "--epochs", "2",
                 "--out", str(out)]) == 0
    return out


def _hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _check_run(out: Path, model: str, epochs: int) -> dict[str, float]:
    for name in ("best.safetensors", "last.safetensors", "train_state.safetensors", "config.yaml", "log.csv",
                 "curves.png", "class_iou.png", "val_samples.png", "per_class_iou.csv", "per_class_iou.md"):
        assert (out / name).is_file(), name
    for name in ("curves.png", "class_iou.png", "val_samples.png"):
        with Image.open(out / name) as picture:
            assert picture.width > 64 and picture.height > 64, name
    metrics = json.loads((out / "metrics.json").read_text())
    for key in (*SCORES, *(f"iou/{name}" for name in CLASSES)):
        assert key in metrics, key
    assert 0.0 <= metrics["miou"] <= 1.0 and 0.0 < metrics["pixel_acc"] <= 1.0
    assert metrics["epochs"] == float(epochs)
    with open(out / "per_class_iou.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["class"] for row in rows] == CLASSES
    assert sum(int(row["gt_pixels"]) for row in rows) == 4 * 64 * 64   # the 4 val images, every pixel labelled
    assert len((out / "log.csv").read_text().strip().splitlines()) == 1 + epochs
    record = checkpoint.read_record(out / "best.safetensors")
    assert record["task"] == "segment" and record["model"] == model and record["classes"] == CLASSES
    assert record["image_size"] == 64 and record["crf"] is False
    return metrics


def test_segnet_run_writes_weights_metrics_and_pictures(segnet: Path) -> None:
    _check_run(segnet, "segnet_small", 2)


@pytest.mark.parametrize("model", ["fcn8s_small", "pspnet_small"])
def test_train_leaves_the_data_untouched(shapes: Path, tmp_path: Path, model: str) -> None:
    before = _hashes(shapes)
    assert main(["segment", "train", "--data", str(shapes), "--model", model, *RUN, "--epochs", "1",
                 "--out", str(tmp_path / model)]) == 0
    _check_run(tmp_path / model, model, 1)
    assert _hashes(shapes) == before


def test_crf_as_rnn_from_scratch_and_from_a_plain_run(shapes: Path, segnet: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from ninshiki.api.segment_common import build_segmenter

    crf = tmp_path / "crf"
    assert main(["segment", "train", "--data", str(shapes), "--model", "fcn8s_small", "--crf", "--crf-iterations",
                 "1", *RUN, "--epochs", "1", "--out", str(crf)]) == 0
    record = checkpoint.read_record(crf / "best.safetensors")
    assert record["crf"] is True and record["crf_iterations"] == 1 and record["model"] == "fcn8s_small"
    keys = load_file(str(crf / "best.safetensors")).keys()
    assert any(k.startswith("crf.") for k in keys) and any(k.startswith("base.") for k in keys)
    # a plain run's weights start a CRF-as-RNN run, loaded into its base network (as the paper trains it)
    plain = str(segnet / "best.safetensors")
    wrapped = build_segmenter("segnet_small", num_classes=len(CLASSES), model_kwargs={}, crf=True,
                              crf_iterations=1, weights=plain)
    stored = load_file(plain)
    base = wrapped.base.state_dict()
    assert set(stored) == set(base) and all(np.array_equal(stored[k].numpy(), base[k].numpy()) for k in stored)
    assert main(["segment", "train", "--data", str(shapes), "--model", "segnet_small", "--crf", "--crf-iterations",
                 "1", "--weights", plain, *RUN, "--epochs", "1", "--out", str(tmp_path / "crf_from_plain")]) == 0
    assert checkpoint.read_record(tmp_path / "crf_from_plain" / "best.safetensors")["crf"] is True
    assert main(["segment", "val", "--data", str(shapes), "--weights", str(crf / "best.safetensors"),
                 "--crf-iterations", "2", "--workers", "0", "--out", str(tmp_path / "crf_val")]) == 0
    assert "miou" in json.loads((tmp_path / "crf_val" / "metrics.json").read_text())
    capsys.readouterr()
    assert main(["segment", "train", "--data", str(shapes), "--model", "fcn8s_small", "--weights",
                 str(crf / "best.safetensors"), *RUN, "--epochs", "1", "--out", str(tmp_path / "no_crf")]) == 2
    assert "add --crf" in capsys.readouterr().err


def test_resume_continues_to_the_planned_epochs(shapes: Path, tmp_path: Path) -> None:
    run = tmp_path / "resumed"
    assert main(["segment", "train", "--data", str(shapes), "--model", "fcn8s_small", *RUN, "--epochs", "1",
                 "--out", str(run)]) == 0
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("epochs: 1", "epochs: 2"))
    assert main(["segment", "train", "--resume", str(run), "--workers", "0"]) == 0   # the rest from OUT's config
    _check_run(run, "fcn8s_small", 2)


def test_val_and_predict_reuse_the_training_max_size(shapes: Path, tmp_path: Path) -> None:
    """A model trained on half-size images is validated on half-size images; val and predict default to that."""
    run = tmp_path / "half"
    assert main(["segment", "train", "--data", str(shapes), "--model", "fcn8s_small", *RUN, "--scale-min", "0.5",
                 "--scale-max", "0.5", "--max-size", "32", "--epochs", "1", "--out", str(run)]) == 0
    assert checkpoint.read_record(run / "best.safetensors")["max_size"] == 32
    trained = json.loads((run / "metrics.json").read_text())
    assert main(["segment", "val", "--data", str(shapes), "--weights", str(run / "best.safetensors"),
                 "--workers", "0", "--out", str(tmp_path / "v")]) == 0
    scored = json.loads((tmp_path / "v" / "metrics.json").read_text())
    assert all(scored[key] == pytest.approx(trained[key], abs=1e-6) for key in SCORES)
    assert main(["segment", "predict", "--source", str(shapes / "images" / "val"), "--weights",
                 str(run / "best.safetensors"), "--out", str(tmp_path / "p")]) == 0
    masks = sorted((tmp_path / "p").rglob("*.png"))
    with Image.open(next(m for m in masks if "mask" in m.as_posix())) as mask:
        assert mask.size == (64, 64)   # predictions come back at the original size


def test_a_dense_crf_refines_plain_weights_at_test_time(shapes: Path, segnet: Path, tmp_path: Path) -> None:
    """`--crf` on plain weights: CRF-as-RNN at its initial parameters on top; 0 iterations leave the logits."""
    weights = str(segnet / "best.safetensors")
    runs = {}
    for name, flags in {"plain": [], "crf0": ["--crf", "--crf-iterations", "0"], "crf3": ["--crf", "--crf-iterations",
                                                                                           "3"]}.items():
        assert main(["segment", "val", "--data", str(shapes), "--weights", weights, "--workers", "0", *flags,
                     "--out", str(tmp_path / name)]) == 0
        runs[name] = json.loads((tmp_path / name / "metrics.json").read_text())
    assert all(runs["crf0"][key] == runs["plain"][key] for key in SCORES)
    assert 0.0 <= runs["crf3"]["miou"] <= 1.0
    from ninshiki.api.segment_common import load_segmenter
    refined = load_segmenter(weights, crf_iterations=3, add_crf=True)
    assert refined.crf and refined.model.crf.eval_iterations == 3 and not load_segmenter(weights).crf
    assert main(["segment", "predict", "--source", str(shapes / "images" / "val"), "--weights", weights, "--crf",
                 "--out", str(tmp_path / "p")]) == 0
    assert any("mask" in m.as_posix() for m in (tmp_path / "p").rglob("*.png"))


def test_test_time_augmentation_in_val_and_predict(shapes: Path, segnet: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """`--tta` averages mirrored and rescaled passes (under the CRF with `--crf`); bad scales are named."""
    weights = str(segnet / "best.safetensors")
    val = ["segment", "val", "--data", str(shapes), "--weights", weights, "--workers", "0"]
    runs = {}
    for name, flags in {"plain": [], "tta": ["--tta"], "tta_crf": ["--tta", "--crf", "--crf-iterations", "2"]}.items():
        assert main([*val, *flags, "--out", str(tmp_path / name)]) == 0
        runs[name] = json.loads((tmp_path / name / "metrics.json").read_text())
        assert 0.0 <= runs[name]["miou"] <= 1.0 and (tmp_path / name / "samples.png").is_file()
    assert runs["tta"]["miou"] != runs["plain"]["miou"] or runs["tta"]["pixel_acc"] != runs["plain"]["pixel_acc"]
    # val's scores are those of predict's class maps with the same flags, recomputed independently
    assert main(["segment", "predict", "--source", str(shapes / "images" / "val"), "--weights", weights, "--tta",
                 "--out", str(tmp_path / "p_tta")]) == 0
    expected, _ = _scores_from_maps(tmp_path / "p_tta" / "masks", shapes / "masks" / "val")
    for key, value in expected.items():
        assert runs["tta"][key] == pytest.approx(value, abs=1e-9, nan_ok=True), key
    assert main(["segment", "predict", "--source", str(shapes / "images" / "val"), "--weights", weights, "--tta",
                 "--tta-scales", "0.5,1", "--out", str(tmp_path / "p")]) == 0
    assert len(json.loads((tmp_path / "p" / "predictions.json").read_text())) == 4
    assert main([*val, "--tta", "--tta-scales", "1,x", "--out", str(tmp_path / "bad")]) == 2
    assert "--tta-scales" in capsys.readouterr().err


def _scores_from_maps(predicted: Path, truth: Path) -> tuple[dict[str, float], np.ndarray]:
    """mIoU and friends (FCN paper, section 5) from class-map PNGs and the data's own mask PNGs."""
    k = len(CLASSES)
    confusion = np.zeros((k, k), dtype=np.int64)   # rows: truth
    for path in sorted(predicted.glob("*.png")):
        pred, gt = np.asarray(Image.open(path)), np.asarray(Image.open(truth / path.name))
        assert pred.shape == gt.shape and pred.max() < k, path
        labelled = gt != 255
        confusion += confusion_matrix(gt[labelled], pred[labelled], labels=list(range(k)))
    tp, gt_pixels, predicted_pixels = np.diag(confusion), confusion.sum(1), confusion.sum(0)
    union = gt_pixels + predicted_pixels - tp
    iou = np.array([t / u if u else np.nan for t, u in zip(tp, union)])
    acc = np.array([t / g if g else np.nan for t, g in zip(tp, gt_pixels)])
    scores = {"miou": np.nanmean(iou), "pixel_acc": tp.sum() / gt_pixels.sum(), "mean_acc": np.nanmean(acc),
              "fwiou": np.nansum(gt_pixels * iou) / gt_pixels.sum()}
    scores.update({f"iou/{name}": value for name, value in zip(CLASSES, iou)})
    return scores, confusion


def test_val_equals_a_recomputation_from_predicted_masks(shapes: Path, segnet: Path, tmp_path: Path) -> None:
    weights = str(segnet / "best.safetensors")
    assert main(["segment", "val", "--data", str(shapes), "--weights", weights, "--workers", "0",
                 "--out", str(tmp_path / "val")]) == 0
    assert main(["segment", "predict", "--source", str(shapes / "images" / "val"), "--weights", weights,
                 "--out", str(tmp_path / "pred")]) == 0
    masks = sorted((tmp_path / "pred" / "masks").glob("*.png"))
    assert [p.stem for p in masks] == [p.stem for p in sorted((shapes / "images" / "val").glob("*.jpg"))]
    expected, confusion = _scores_from_maps(tmp_path / "pred" / "masks", shapes / "masks" / "val")
    assert np.count_nonzero(confusion.sum(0)) >= 3, "a model predicting one class would make this check weak"
    metrics = json.loads((tmp_path / "val" / "metrics.json").read_text())
    for key, value in expected.items():
        if np.isnan(value):
            assert np.isnan(metrics[key]), key
        else:
            assert metrics[key] == pytest.approx(value, abs=1e-9), key
    with open(tmp_path / "val" / "per_class_iou.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [int(r["gt_pixels"]) for r in rows] == confusion.sum(1).tolist()
    assert [int(r["predicted_pixels"]) for r in rows] == confusion.sum(0).tolist()
    for name in ("samples.png", "class_iou.png", "per_class_iou.md", "config.yaml"):
        assert (tmp_path / "val" / name).is_file(), name


def test_val_reads_every_form_of_the_generated_data(shapes: Path, segnet: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    weights = str(segnet / "best.safetensors")
    results = {}
    forms = {"folder": [str(shapes)], "coco_yaml": [str(shapes / "coco.yaml")], "voc": [str(shapes / "VOC")],
             # one COCO json holds one split: all of it, nothing split off, evaluated as "train"
             "coco_json": [str(shapes / "annotations" / "instances_val.json"), "--split", "train",
                           "--val-fraction", "0"]}
    for form, data in forms.items():
        out = tmp_path / form
        assert main(["segment", "val", "--data", *data, "--weights", weights, "--workers", "0", "--save-images", "0",
                     "--out", str(out)]) == 0, form
        metrics = json.loads((out / "metrics.json").read_text())
        results[form] = {k: v for k, v in metrics.items() if k.startswith(("iou/", "acc/")) or k in SCORES}
        assert metrics["images"] == 4.0, form
    # mask PNGs, VOC palette PNGs and COCO polygons describe the same pixels, so the scores are the same
    assert results["coco_yaml"] == results["voc"] == results["coco_json"] == pytest.approx(results["folder"],
                                                                                           nan_ok=True)
    capsys.readouterr()
    assert main(["segment", "val", "--data", str(shapes / "data.yaml"), "--weights", weights, "--workers", "0",
                 "--out", str(tmp_path / "yolo")]) == 2   # YOLO boxes carry no masks
    assert "train_000000.txt" in capsys.readouterr().err


def test_predict_on_a_folder_an_image_and_a_video(shapes: Path, segnet: Path, tmp_path: Path) -> None:
    weights = str(segnet / "best.safetensors")
    folder = tmp_path / "photos"
    shutil.copytree(shapes / "images" / "val", folder)
    (folder / "broken.jpg").write_bytes((folder / "val_000000.jpg").read_bytes()[:300])
    assert main(["segment", "predict", "--source", str(folder), "--weights", weights, "--out",
                 str(tmp_path / "folder")]) == 0
    records = json.loads((tmp_path / "folder" / "predictions.json").read_text())
    assert [r["file_name"] for r in records] == [f"val_00000{i}.jpg" for i in range(4)]
    for record in records:
        mask = np.asarray(Image.open(tmp_path / "folder" / "masks" / Path(record["file_name"]).with_suffix(".png")))
        assert mask.shape == (record["height"], record["width"]) == (64, 64)
        assert mask.max() < len(CLASSES)
        counts = np.bincount(mask.ravel(), minlength=len(CLASSES))
        assert record["pixels"] == {CLASSES[k]: int(c) for k, c in enumerate(counts) if c}
        assert (tmp_path / "folder" / "images" / Path(record["file_name"]).with_suffix(".png")).is_file()
    assert "broken.jpg" in (tmp_path / "folder" / "skipped.txt").read_text()
    assert [c["name"] for c in json.loads((tmp_path / "folder" / "classes.json").read_text())] == CLASSES

    single = folder / "val_000001.jpg"
    assert main(["segment", "predict", "--source", str(single), "--weights", weights, "--out",
                 str(tmp_path / "single")]) == 0
    assert len(json.loads((tmp_path / "single" / "predictions.json").read_text())) == 1
    alone = np.asarray(Image.open(tmp_path / "single" / "masks" / "val_000001.png"))
    assert np.array_equal(alone, np.asarray(Image.open(tmp_path / "folder" / "masks" / "val_000001.png")))

    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5, (64, 64))
    for path in sorted((shapes / "images" / "val").glob("*.jpg")):
        writer.write(cv2.imread(str(path)))
    writer.release()
    assert main(["segment", "predict", "--source", str(video), "--weights", weights, "--out",
                 str(tmp_path / "video")]) == 0
    frames = json.loads((tmp_path / "video" / "predictions.json").read_text())
    assert [r["file_name"] for r in frames] == [f"clip.mp4#frame{i:06d}" for i in range(4)]
    assert all(sum(r["pixels"].values()) == 64 * 64 for r in frames)
    drawn = cv2.VideoCapture(str(tmp_path / "video" / "clip_segmented.mp4"))
    assert int(drawn.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    drawn.release()


def _copy_with_mask(shapes: Path, where: Path, mask: np.ndarray, name: str = "train_000001.png") -> Path:
    root = where / "data"
    shutil.copytree(shapes, root)
    Image.fromarray(mask).save(root / "masks" / "train" / name)
    return root


def test_bad_data_and_weights_are_named(shapes: Path, segnet: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    train = ["segment", "train", "--model", "fcn8s_small", *RUN, "--epochs", "1", "--out", str(tmp_path / "r")]
    assert main([*train, "--data", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err

    small = _copy_with_mask(shapes, tmp_path / "small", np.zeros((32, 32), np.uint8))
    assert main([*train, "--data", str(small)]) == 2
    assert "train_000001.png" in capsys.readouterr().err

    mask = np.asarray(Image.open(shapes / "masks" / "train" / "train_000002.png")).copy()
    mask[3, 4] = len(CLASSES) + 3
    outside = _copy_with_mask(shapes, tmp_path / "outside", mask, "train_000002.png")
    assert main([*train, "--data", str(outside)]) == 2
    err = capsys.readouterr().err
    assert "train_000002.png" in err and str(len(CLASSES) + 3) in err

    assert main([*train, "--data", str(shapes), "--model", "resnet18"]) == 2
    assert "'resnet18' is a 'classify' model" in capsys.readouterr().err

    weights = str(segnet / "best.safetensors")
    val = ["segment", "val", "--data", str(shapes), "--workers", "0", "--out", str(tmp_path / "v")]
    assert main([*val, "--weights", weights, "--model", "fcn8s_small"]) == 2
    assert "segnet_small" in capsys.readouterr().err


def test_weights_of_another_task_are_refused(shapes: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from ninshiki.api.detect_common import detector_record
    from ninshiki.models.weights import create_model

    detector = tmp_path / "ssd.safetensors"   # what `detect train` writes
    checkpoint.save_weights(detector, create_model("ssd_lite", num_classes=len(DEFAULT_CLASSES)).state_dict(),
                            detector_record(model="ssd_lite", model_kwargs={}, classes=list(DEFAULT_CLASSES),
                                            image_size=64, category_ids=None))
    for mode, where in (("val", ["--data", str(shapes)]), ("predict", ["--source", str(shapes / "images" / "val")])):
        assert main(["segment", mode, *where, "--weights", str(detector), "--out", str(tmp_path / mode)]) == 2
        assert "holds a 'detect' model, not a semantic segmenter" in capsys.readouterr().err
