"""The CLI end to end on a tiny generated folder dataset: train, val, predict, filters, data check."""
import json

import pytest
from safetensors.torch import load_file

from ninshiki.cli import main

TRAIN = ["--model", "resnet20", "--epochs", "2", "--image-size", "16", "--batch-size", "8", "--device", "cpu",
         "--lr", "0.05", "--val-split", "0.25"]


@pytest.fixture
def trained(tiny_folder, tmp_path):
    out = tmp_path / "run"
    assert main(["classify", "train", "--data", str(tiny_folder), *TRAIN, "--out", str(out)]) == 0
    return tiny_folder, out


def test_train_writes_weights_metrics_log_and_names_the_skipped_file(trained) -> None:
    _, out = trained
    for name in ("last.safetensors", "best.safetensors", "train_state.safetensors", "config.yaml", "log.csv",
                 "curves.png", "confusion.png", "confusion.csv", "per_class.csv"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert all(isinstance(v, float) for v in metrics.values())
    assert 0.0 <= metrics["top1"] <= 1.0 and metrics["epochs"] == 2.0
    assert len((out / "log.csv").read_text().strip().splitlines()) == 3      # header + 2 epochs
    assert "broken.png" in (out / "skipped.txt").read_text()
    assert set(load_file(out / "best.safetensors")) == set(load_file(out / "last.safetensors"))


def test_val_reproduces_the_best_epoch_metrics(trained, tmp_path) -> None:
    data, out = trained
    val_out = tmp_path / "val"
    assert main(["classify", "val", "--data", str(data), "--model", "resnet20", "--weights",
                 str(out / "best.safetensors"), "--val-split", "0.25", "--device", "cpu", "--out", str(val_out)]) == 0
    trained_metrics = json.loads((out / "metrics.json").read_text())
    val_metrics = json.loads((val_out / "metrics.json").read_text())
    assert val_metrics["top1"] == trained_metrics["top1"]
    assert val_metrics["loss"] == pytest.approx(trained_metrics["loss"], rel=1e-5)
    assert (val_out / "confusion.png").is_file() and (val_out / "per_class.csv").is_file()


def test_predict_folder_and_filters(trained, tmp_path) -> None:
    data, out = trained
    pred = tmp_path / "pred"
    assert main(["classify", "predict", "--weights", str(out / "best.safetensors"), "--source", str(data / "green"),
                 "--topk", "2", "--out", str(pred)]) == 0
    results = json.loads((pred / "predictions.json").read_text())
    assert len(results) == 12 and all(len(r["top"]) == 2 for r in results)
    assert all(0.0 <= t["prob"] <= 1.0 for r in results for t in r["top"])
    assert (pred / "predictions.png").is_file() and (pred / "predictions.csv").is_file()
    every = tmp_path / "every"      # the whole folder: 36 images and one broken file, decoded by 2 workers
    assert main(["classify", "predict", "--weights", str(out / "best.safetensors"), "--source", str(data),
                 "--workers", "2", "--batch-size", "5", "--out", str(every)]) == 0
    paths = [r["path"] for r in json.loads((every / "predictions.json").read_text())]
    assert len(paths) == 36 and paths == sorted(paths) and not any("broken" in p for p in paths)
    assert "broken.png" in (every / "skipped.txt").read_text()
    assert main(["classify", "filters", "--weights", str(out / "best.safetensors"), "--out", str(tmp_path / "f")]) == 0
    assert (tmp_path / "f" / "filters.png").is_file()


def test_config_file_gives_all_flags(tiny_folder, tmp_path) -> None:
    run = tmp_path / "run.yaml"
    run.write_text(f"data: {tiny_folder}\nmodel: vgg_small\nmodel_kwargs: {{width: 8}}\nepochs: 1\nimage_size: 16\n"
                   f"batch_size: 8\ndevice: cpu\nout: {tmp_path / 'from_yaml'}\n")
    assert main(["classify", "train", "--config", str(run)]) == 0
    assert "model: vgg_small" in (tmp_path / "from_yaml" / "config.yaml").read_text()
    # val rebuilds the narrow network from the record in the weights file
    assert main(["classify", "val", "--data", str(tiny_folder), "--weights",
                 str(tmp_path / "from_yaml" / "best.safetensors"), "--out", str(tmp_path / "v")]) == 0


def test_errors_are_one_clear_line(tmp_path, capsys) -> None:
    assert main(["classify", "train", "--data", "digits", "--model", "resnet21", "--out", str(tmp_path)]) == 2
    assert "unknown model 'resnet21'" in capsys.readouterr().err
    assert main(["classify", "train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path)]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert main(["classify", "predict", "--weights", str(tmp_path / "w.safetensors"), "--source", "x.png"]) == 2


def test_data_check_reports_the_corrupt_file(tiny_folder, tmp_path, capsys) -> None:
    assert main(["data", "check", str(tiny_folder), "--out", str(tmp_path / "report.json")]) == 0
    assert "broken.png" in capsys.readouterr().out
    assert json.loads((tmp_path / "report.json").read_text())
    assert main(["data", "check", str(tiny_folder), "--strict"]) == 1


def test_models_lists_the_classifiers(capsys) -> None:
    assert main(["models", "--task", "classify"]) == 0
    listed = capsys.readouterr().out
    for name in ("alexnet", "vgg16_bn", "googlenet", "resnet152", "resnet20", "vgg_small"):
        assert f"\n{name} " in listed


def test_sets_too_big_for_memory_stream_from_disk_with_workers(tiny_folder, tmp_path) -> None:
    out = tmp_path / "streamed"
    assert main(["classify", "train", "--data", str(tiny_folder), *TRAIN, "--epochs", "1", "--memory-limit-mb", "0",
                 "--workers", "2", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["top1"] <= 1.0
    assert "broken.png" in (out / "skipped.txt").read_text()
